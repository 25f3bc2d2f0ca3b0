//! The host side of the SimpleFOC Commander protocol for one motor registered under a letter.
//!
//! At start the codec switches the Commander to machine-readable replies (`@3`: every reply
//! carries the command letters as a prefix, the only unambiguous form), asks for 6 decimals,
//! selects the monitoring variables target, Uq, Iq, velocity and angle (`MMS1101011`) and
//! reads the torque controller, motion type, target and enable flag. Telemetry comes from the
//! sketch's `motor.monitor()` stream (tab-separated numbers in bitmap order, currents in mA);
//! when no stream line arrives for a second the codec polls `MMG7` instead (currents in A).
//! The enable flag is read every half second, because the protocol reports nothing on its
//! own. Replies in verbose mode 2 are understood as well.
//!
//! A reply in verbose mode 2, a verbose reply other than `machine`, the library's `MOT:`
//! initialisation lines or three unanswered requests in a row mean the board may have reset:
//! motion and torque mode, target and enable flag are forgotten, setpoints are refused until
//! the mode is read again, mode 3 is asserted again and the state re-read. Reads of a state
//! that is not known are repeated until answered (a board that resets when the port opens
//! loses the first ones).
//!
//! Requests travel in a small window (three at a time, each at most 18 characters plus `\n`)
//! so that the 20-byte command buffer and small UART buffers of the boards never overflow;
//! a reply that does not come within half a second is reported and forgotten. At most one
//! setpoint waits in the queue (a newer one replaces it). A disable or e-stop goes out at once
//! and drops the queued setpoints, parameter writes, console lines and enables; its `E0` is
//! repeated until the drive answers `E` = 0. A mode change of a running motor is made with the
//! motor off (`E0`, `C<n>`, target, `E1`).
//!
//! The protocol has no fault readout. A motor that reads disabled while drivebench last
//! commanded it enabled is shown as a fault saying exactly that, and nothing more.

use std::collections::VecDeque;
use std::f64::consts::TAU;

use crate::drive::{Command, ControlMode, DriveState, Event, ParamSpec, Sample, SignalSpec};
use crate::protocol::{
    Codec, CodecError, CodecOut, LineSplitter, RAD_S_PER_RPM, RPM_PER_RAD_S, RawIntent, format_decimal,
};

/// Longest command text; with its `\n` it fills 19 of the Commander's 20 bytes.
const MAX_COMMAND_CHARS: usize = 18;
/// Longest reply or stream line kept; longer lines are dropped.
const MAX_LINE_LEN: usize = 512;
/// Requests awaiting a reply at one time.
const MAX_IN_FLIGHT: usize = 3;
/// Requests waiting to be sent; more are refused.
const MAX_QUEUED: usize = 256;
const REPLY_TIMEOUT_S: f64 = 0.5;
/// How often the enable flag is read.
const STATUS_POLL_S: f64 = 0.5;
/// Without a stream line for this long, telemetry is polled with `MMG7`.
const STREAM_SILENCE_S: f64 = 1.0;
/// Shortest interval between two attempts to (re)assert verbose mode 3.
const VERBOSE_RETRY_S: f64 = 1.0;
/// A shaft angle older than this is not used to enter angle mode.
const ANGLE_FRESH_S: f64 = 0.5;
/// Decimals asked for in replies (`#6`).
const REPLY_DECIMALS: usize = 6;
/// Monitoring variables: target, Uq, Iq, velocity, angle.
const MONITOR_BITMAP: &str = "1101011";
/// Log lines allowed per second; the rest are counted.
const LOG_BUDGET_PER_S: u32 = 10;

/// Monitoring bitmap bits in stream order: target, Uq, Ud, Iq, Id, velocity, angle.
const MONITOR_BITS: [u8; 7] = [0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01];

/// Signal indices.
const SIG_SPEED: u16 = 0;
const SIG_CURRENT: u16 = 1;
const SIG_POSITION: u16 = 2;
const SIG_UQ: u16 = 3;
const SIG_UD: u16 = 4;
const SIG_ID: u16 = 5;
const SIG_SPEED_SP: u16 = 6;
const SIG_CURRENT_SP: u16 = 7;
const SIG_POSITION_SP: u16 = 8;
const SIG_UQ_SP: u16 = 9;

/// Motion control types, by the number `C` takes.
const MOTION_NAMES: [&str; 7] =
    ["torque", "vel", "angle", "vel open", "angle open", "angle nocascade", "custom"];
/// Torque control types, by the number `T` takes; 0 is voltage control.
const TORQUE_NAMES: [&str; 4] = ["volt", "dc curr", "foc curr", "est. curr"];
const TORQUE_VOLTAGE: u8 = 0;

/// One catalogue entry and the motor command that reads and writes it.
struct ParamDef {
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    min: f64,
    max: f64,
    cmd: u8,
    sub: u8,
    /// The drive holds rad/s, the catalogue rpm.
    rpm: bool,
    help: &'static str,
}

const fn def(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    (min, max): (f64, f64),
    (cmd, sub): (u8, u8),
    help: &'static str,
) -> ParamDef {
    ParamDef { key, label, unit, min, max, cmd, sub, rpm: false, help }
}

const fn def_rpm(
    key: &'static str,
    label: &'static str,
    (min, max): (f64, f64),
    (cmd, sub): (u8, u8),
    help: &'static str,
) -> ParamDef {
    ParamDef { key, label, unit: "rpm", min, max, cmd, sub, rpm: true, help }
}

const PARAMS: &[ParamDef] = &[
    def(
        "current_q_kp",
        "Iq PID P",
        "V/A",
        (0.0, 1000.0),
        (b'Q', b'P'),
        "Proportional gain of the q-current PID (QP).",
    ),
    def(
        "current_q_ki",
        "Iq PID I",
        "V/(A·s)",
        (0.0, 1.0e6),
        (b'Q', b'I'),
        "Integral gain of the q-current PID (QI).",
    ),
    def(
        "current_q_kd",
        "Iq PID D",
        "V·s/A",
        (0.0, 100.0),
        (b'Q', b'D'),
        "Derivative gain of the q-current PID (QD).",
    ),
    def(
        "current_q_ramp_v_per_s",
        "Iq PID ramp",
        "V/s",
        (0.0, 1.0e6),
        (b'Q', b'R'),
        "Largest rate of change of the q-current PID output (QR); 0 means none.",
    ),
    def(
        "current_q_output_limit_v",
        "Iq PID output limit",
        "V",
        (0.0, 1000.0),
        (b'Q', b'L'),
        "Voltage clamp of the q-current PID (QL); the library sets it to the voltage limit when LU changes.",
    ),
    def(
        "current_q_filter_tf_s",
        "Iq filter Tf",
        "s",
        (0.0, 10.0),
        (b'Q', b'F'),
        "Time constant of the q-current low-pass filter (QF).",
    ),
    def(
        "current_d_kp",
        "Id PID P",
        "V/A",
        (0.0, 1000.0),
        (b'D', b'P'),
        "Proportional gain of the d-current PID (DP).",
    ),
    def(
        "current_d_ki",
        "Id PID I",
        "V/(A·s)",
        (0.0, 1.0e6),
        (b'D', b'I'),
        "Integral gain of the d-current PID (DI).",
    ),
    def(
        "current_d_kd",
        "Id PID D",
        "V·s/A",
        (0.0, 100.0),
        (b'D', b'D'),
        "Derivative gain of the d-current PID (DD).",
    ),
    def(
        "current_d_ramp_v_per_s",
        "Id PID ramp",
        "V/s",
        (0.0, 1.0e6),
        (b'D', b'R'),
        "Largest rate of change of the d-current PID output (DR); 0 means none.",
    ),
    def(
        "current_d_output_limit_v",
        "Id PID output limit",
        "V",
        (0.0, 1000.0),
        (b'D', b'L'),
        "Voltage clamp of the d-current PID (DL); the library sets it to the voltage limit when LU changes.",
    ),
    def(
        "current_d_filter_tf_s",
        "Id filter Tf",
        "s",
        (0.0, 10.0),
        (b'D', b'F'),
        "Time constant of the d-current low-pass filter (DF).",
    ),
    def(
        "velocity_kp",
        "Velocity PID P",
        "A·s/rad",
        (0.0, 100.0),
        (b'V', b'P'),
        "Proportional gain of the velocity PID (VP): amperes (volts in voltage torque mode) per rad/s of error.",
    ),
    def(
        "velocity_ki",
        "Velocity PID I",
        "A/rad",
        (0.0, 10_000.0),
        (b'V', b'I'),
        "Integral gain of the velocity PID (VI); removes the steady speed error under load.",
    ),
    def(
        "velocity_kd",
        "Velocity PID D",
        "A·s²/rad",
        (0.0, 10.0),
        (b'V', b'D'),
        "Derivative gain of the velocity PID (VD); usually 0.",
    ),
    def(
        "velocity_ramp_a_per_s",
        "Velocity PID ramp",
        "A/s",
        (0.0, 1.0e6),
        (b'V', b'R'),
        "Largest rate of change of the velocity PID output (VR; V/s in voltage torque mode); 0 means none.",
    ),
    def(
        "velocity_output_limit_a",
        "Velocity PID output limit",
        "A",
        (0.0, 100.0),
        (b'V', b'L'),
        "Clamp of the velocity PID output (VL): the torque current the velocity and angle loops may ask for. \
         The library resets it to the current limit whenever LC changes.",
    ),
    def(
        "velocity_filter_tf_s",
        "Velocity filter Tf",
        "s",
        (0.0, 10.0),
        (b'V', b'F'),
        "Time constant of the velocity low-pass filter (VF): more smoothing, more lag.",
    ),
    def(
        "angle_kp",
        "Angle P",
        "1/s",
        (0.0, 1000.0),
        (b'A', b'P'),
        "Angle controller gain (AP): rad/s of velocity per rad of error.",
    ),
    def(
        "angle_ki",
        "Angle I",
        "1/s²",
        (0.0, 10_000.0),
        (b'A', b'I'),
        "Integral gain of the angle controller (AI); usually 0.",
    ),
    def(
        "angle_kd",
        "Angle D",
        "s/s",
        (0.0, 100.0),
        (b'A', b'D'),
        "Derivative gain of the angle controller (AD); usually 0.",
    ),
    def(
        "angle_ramp_rad_per_s2",
        "Angle output ramp",
        "rad/s²",
        (0.0, 1.0e6),
        (b'A', b'R'),
        "Largest rate of change of the angle controller's velocity output (AR); 0 means none.",
    ),
    def_rpm(
        "angle_output_limit_rpm",
        "Angle output limit",
        (0.0, 100_000.0),
        (b'A', b'L'),
        "Clamp of the angle controller's velocity output (AL); the library sets it to the velocity limit when LV changes.",
    ),
    def(
        "angle_filter_tf_s",
        "Angle filter Tf",
        "s",
        (0.0, 10.0),
        (b'A', b'F'),
        "Time constant of the angle low-pass filter (AF); usually 0.",
    ),
    def(
        "current_limit_a",
        "Current limit",
        "A",
        (0.0, 100.0),
        (b'L', b'C'),
        "Largest torque current (LC). Also becomes the velocity PID output limit in current torque modes.",
    ),
    def(
        "voltage_limit_v",
        "Voltage limit",
        "V",
        (0.0, 1000.0),
        (b'L', b'U'),
        "Largest phase voltage the drive applies (LU); also the current PIDs' output limit.",
    ),
    def_rpm(
        "velocity_limit_rpm",
        "Velocity limit",
        (0.0, 100_000.0),
        (b'L', b'V'),
        "Largest speed of the angle loop (LV). It does not limit a velocity-mode target.",
    ),
];

fn find_param(key: &str) -> Option<usize> {
    PARAMS.iter().position(|d| d.key == key)
}

fn find_param_cmd(cmd: u8, sub: u8) -> Option<usize> {
    PARAMS.iter().position(|d| d.cmd == cmd && d.sub == sub)
}

/// What a reply line answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Verbose,
    Decimal,
    Target,
    /// A motor command letter and sub-command letter (0: none).
    Cmd(u8, u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusIntent {
    Read,
    Enable,
    Disable,
    /// `E0` ahead of a mode change of a running motor; the reported state does not change.
    Pause,
    /// `E1` after that mode change.
    Resume,
}

/// Why a request was sent, for handling its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Verbose,
    Decimals,
    MonitorSet,
    Status(StatusIntent),
    Motion,
    Torque,
    /// A target read.
    Target,
    /// A target write (a setpoint, or the start target of a mode).
    TargetWrite,
    ParamRead(usize),
    ParamWrite(usize),
    MonitorAll,
    /// A console line or a line whose reply is not tracked.
    Untracked,
}

#[derive(Debug, Clone)]
struct Request {
    line: String,
    kind: Kind,
    /// The reply expected; `None` when none is tracked.
    key: Option<Key>,
}

#[derive(Debug, Clone)]
struct InFlight {
    line: String,
    kind: Kind,
    key: Key,
    sent_s: f64,
}

/// A received line, classified.
#[derive(Debug, Clone, PartialEq)]
enum Parsed {
    /// Monitoring stream values (`None`: a field that is not a finite number).
    Stream(Vec<Option<f64>>),
    Reply {
        key: Key,
        value: String,
        mode2: bool,
    },
    /// A verbose-mode-2 error naming only the command letter (or none).
    Error2(Option<u8>),
    /// `?` listing line: id and label.
    Scan(String),
    /// The `\r` warning of verbose mode 2.
    Warning,
    Unknown,
}

/// SimpleFOC Commander codec for the motor registered under one letter.
pub struct SimpleFocCodec {
    motor: u8,
    splitter: LineSplitter,
    first_line: bool,
    queue: VecDeque<Request>,
    in_flight: VecDeque<InFlight>,
    verbose3: bool,
    last_verbose_try_s: Option<f64>,
    consecutive_timeouts: u32,
    /// A loss of sync (reset, verbose mode lost) has been logged and not yet recovered.
    resync_logged: bool,
    enabled: Option<bool>,
    commanded_enabled: Option<bool>,
    /// A stop (`E0`) was commanded and the drive has not confirmed `E` = 0 in reply yet.
    stop_unconfirmed: bool,
    /// The stop was an e-stop that also zeroed a speed or torque target.
    stop_zeroes_target: bool,
    fault: Option<String>,
    reported_state: Option<DriveState>,
    motion: Option<u8>,
    torque: Option<u8>,
    /// Target in the drive's unit (rad/s, rad, A or V).
    target: Option<f64>,
    reported_mode: Option<(ControlMode, f64)>,
    voltage_mode_noted: bool,
    bitmap: Option<u8>,
    stream_mismatches: u32,
    last_monitor_set_s: Option<f64>,
    /// Last stream line, or the moment the stream became expected.
    stream_seen_s: f64,
    polling: bool,
    /// Shaft angle (rad), velocity (rad/s) and when they were seen.
    last_angle: Option<(f64, f64, f64)>,
    next_status_s: f64,
    log_window_s: f64,
    logs_in_window: u32,
    logs_suppressed: u64,
    now_s: f64,
}

impl SimpleFocCodec {
    /// A codec for the motor registered under `motor` (`commander.add('M', doMotor, ..)`).
    pub fn new(motor: char) -> Self {
        let motor = if motor.is_ascii_alphabetic() { motor as u8 } else { b'M' };
        SimpleFocCodec {
            motor,
            splitter: LineSplitter::new(b"\r\n", MAX_LINE_LEN),
            first_line: true,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            verbose3: false,
            last_verbose_try_s: None,
            consecutive_timeouts: 0,
            resync_logged: false,
            enabled: None,
            commanded_enabled: None,
            stop_unconfirmed: false,
            stop_zeroes_target: false,
            fault: None,
            reported_state: None,
            motion: None,
            torque: None,
            target: None,
            reported_mode: None,
            voltage_mode_noted: false,
            bitmap: None,
            stream_mismatches: 0,
            last_monitor_set_s: None,
            stream_seen_s: 0.0,
            polling: false,
            last_angle: None,
            next_status_s: 0.0,
            log_window_s: f64::NEG_INFINITY,
            logs_in_window: 0,
            logs_suppressed: 0,
            now_s: 0.0,
        }
    }

    fn id(&self) -> char {
        char::from(self.motor)
    }

    // ---- sending ----

    /// A request for a motor command (`<id><letters><value>`).
    fn motor_request(&self, body: &str, kind: Kind, key: Option<Key>) -> Request {
        Request { line: format!("{}{body}", self.id()), kind, key }
    }

    fn enqueue(&mut self, request: Request, out: &mut CodecOut) {
        if self.queue.len() >= MAX_QUEUED {
            out.events.push(Event::Refused(format!(
                "`{}` not sent: {MAX_QUEUED} requests are already waiting for the drive",
                request.line
            )));
            return;
        }
        self.queue.push_back(request);
    }

    /// Puts requests at the head of the queue, in the given order.
    fn enqueue_first(&mut self, requests: Vec<Request>) {
        for request in requests.into_iter().rev() {
            self.queue.push_front(request);
        }
    }

    /// Writes a request at once, ahead of the queue and outside the window (stops).
    fn send_now(&mut self, request: Request, now_s: f64, out: &mut CodecOut) {
        out.tx.extend_from_slice(request.line.as_bytes());
        out.tx.push(b'\n');
        if let Some(key) = request.key {
            self.in_flight.push_back(InFlight { line: request.line, kind: request.kind, key, sent_s: now_s });
        }
    }

    /// Sends queued requests while the window has room.
    fn flush(&mut self, now_s: f64, out: &mut CodecOut) {
        while self.in_flight.len() < MAX_IN_FLIGHT {
            let Some(request) = self.queue.pop_front() else { break };
            self.send_now(request, now_s, out);
        }
    }

    fn pending(&self, kind: Kind) -> bool {
        self.queue.iter().any(|r| r.kind == kind) || self.in_flight.iter().any(|r| r.kind == kind)
    }

    fn pending_status(&self) -> bool {
        let is_status = |k: &Kind| matches!(k, Kind::Status(_));
        self.queue.iter().any(|r| is_status(&r.kind)) || self.in_flight.iter().any(|r| is_status(&r.kind))
    }

    fn status_request(&self, intent: StatusIntent) -> Request {
        let body = match intent {
            StatusIntent::Read => "E",
            StatusIntent::Enable | StatusIntent::Resume => "E1",
            StatusIntent::Disable | StatusIntent::Pause => "E0",
        };
        self.motor_request(body, Kind::Status(intent), Some(Key::Cmd(b'E', 0)))
    }

    fn target_request(&self, value: Option<f64>) -> Option<Request> {
        match value {
            None => Some(self.motor_request("", Kind::Target, Some(Key::Target))),
            Some(v) => {
                let line = encode_value(&self.id().to_string(), v)?;
                Some(Request { line, kind: Kind::TargetWrite, key: Some(Key::Target) })
            }
        }
    }

    fn param_read_request(&self, index: usize) -> Request {
        let d = &PARAMS[index];
        let body = format!("{}{}", char::from(d.cmd), char::from(d.sub));
        self.motor_request(&body, Kind::ParamRead(index), Some(Key::Cmd(d.cmd, d.sub)))
    }

    /// Verbose mode 3, the stream selection and the reads that depend on them.
    fn setup_requests(&self) -> Vec<Request> {
        vec![
            Request { line: "@3".into(), kind: Kind::Verbose, key: Some(Key::Verbose) },
            Request { line: format!("#{REPLY_DECIMALS}"), kind: Kind::Decimals, key: Some(Key::Decimal) },
            self.motor_request(&format!("MS{MONITOR_BITMAP}"), Kind::MonitorSet, Some(Key::Cmd(b'M', b'S'))),
        ]
    }

    /// Reads of the torque controller, motion type, target and enable flag that are not known
    /// and not already asked for.
    fn state_reads(&self) -> Vec<Request> {
        let mut requests = Vec::new();
        if self.torque.is_none() && !self.pending(Kind::Torque) {
            requests.push(self.motor_request("T", Kind::Torque, Some(Key::Cmd(b'T', 0))));
        }
        if self.motion.is_none() && !self.pending(Kind::Motion) {
            requests.push(self.motor_request("C", Kind::Motion, Some(Key::Cmd(b'C', 0))));
        }
        if self.target.is_none()
            && !self.pending(Kind::Target)
            && !self.pending(Kind::TargetWrite)
            && let Some(r) = self.target_request(None)
        {
            requests.push(r);
        }
        if self.enabled.is_none() && !self.pending_status() {
            requests.push(self.status_request(StatusIntent::Read));
        }
        requests
    }

    /// Asserts verbose mode 3 again (at most once per [`VERBOSE_RETRY_S`]) unless it is
    /// confirmed, and reads whatever of the drive's state is not known, ahead of the queue.
    /// Reads that time out are asked again at the next call, so set-up requests a board lost
    /// (one that resets when the port opens) are repeated.
    fn resync(&mut self, now_s: f64) {
        let mut requests = Vec::new();
        if !self.verbose3
            && !self.pending(Kind::Verbose)
            && !self.last_verbose_try_s.is_some_and(|t| now_s - t < VERBOSE_RETRY_S)
        {
            self.last_verbose_try_s = Some(now_s);
            self.last_monitor_set_s = Some(now_s);
            requests = self.setup_requests();
        }
        // Until verbose mode 3 is confirmed, a read would be answered in another format (and
        // its answer would trigger the same read again at once).
        if self.verbose3 || !self.pending(Kind::Verbose) {
            requests.extend(self.state_reads());
        }
        self.enqueue_first(requests);
    }

    /// The drive may have reset, or left verbose mode 3: its motion and torque mode, target
    /// and enable flag may all differ from what was known. They are forgotten (so setpoints
    /// are refused until the mode is read again), queued target writes are dropped (their
    /// unit is no longer known), and everything is read again.
    fn lost_sync(&mut self, why: &str, now_s: f64, out: &mut CodecOut) {
        let knew =
            self.motion.is_some() || self.torque.is_some() || self.target.is_some() || self.enabled.is_some();
        self.verbose3 = false;
        self.motion = None;
        self.torque = None;
        self.target = None;
        self.enabled = None;
        if !self.stop_unconfirmed {
            // Taken from the next read, as at start.
            self.commanded_enabled = None;
        }
        self.reported_mode = None;
        self.voltage_mode_noted = false;
        self.bitmap = None;
        let before = self.queue.len();
        self.queue.retain(|r| r.kind != Kind::TargetWrite);
        if self.queue.len() != before {
            out.events.push(Event::Refused(format!(
                "setpoint not sent: {why}, and the unit of the target is not known until the mode is read again"
            )));
        }
        if knew && !self.resync_logged {
            self.resync_logged = true;
            self.log(
                format!(
                    "{why}: the drive may have reset. Its motion and torque mode, target and enable flag are \
                     read again; setpoints are refused until the mode is known"
                ),
                out,
            );
        }
        self.last_verbose_try_s = None;
        self.resync(now_s);
    }

    /// Before a stop: drops the queued target writes, parameter writes, console lines and
    /// enables, so nothing sent after the `E0` moves the motor again. Returns whether a
    /// target write was dropped.
    fn drop_for_stop(&mut self, out: &mut CodecOut) -> bool {
        let mut dropped_target = false;
        let mut refused = Vec::new();
        self.queue.retain(|r| match r.kind {
            Kind::TargetWrite => {
                dropped_target = true;
                false
            }
            Kind::ParamWrite(i) => {
                refused.push(format!(
                    "writing {} (`{}`) cancelled: the motor was stopped",
                    PARAMS[i].key, r.line
                ));
                false
            }
            Kind::Untracked => {
                refused.push(format!("console line `{}` not sent: the motor was stopped", r.line));
                false
            }
            Kind::Status(StatusIntent::Enable | StatusIntent::Resume) => false,
            _ => true,
        });
        out.events.extend(refused.into_iter().map(Event::Refused));
        dropped_target
    }

    /// Sends the stop: `E0` and, after an e-stop in speed or current mode, a zero target.
    fn send_stop(&mut self, now_s: f64, out: &mut CodecOut) {
        let disable = self.status_request(StatusIntent::Disable);
        self.send_now(disable, now_s, out);
        if self.stop_zeroes_target
            && matches!(self.active_mode(), Some(ControlMode::Speed | ControlMode::Current))
            && let Some(request) = self.target_request(Some(0.0))
        {
            self.send_now(request, now_s, out);
            self.target = Some(0.0);
            self.update_mode(out);
        }
    }

    /// A stop (`Disable`, e-stop, port closing).
    fn stop_motor(&mut self, zero_target: bool, now_s: f64, out: &mut CodecOut) {
        self.commanded_enabled = Some(false);
        self.stop_unconfirmed = true;
        self.stop_zeroes_target =
            zero_target && matches!(self.active_mode(), Some(ControlMode::Speed | ControlMode::Current));
        let dropped_target = self.drop_for_stop(out);
        self.send_stop(now_s, out);
        if dropped_target && !self.stop_zeroes_target {
            // The target held locally was never sent: read the drive's.
            self.target = None;
            self.reported_mode = None;
            let reads = self.state_reads();
            self.enqueue_first(reads);
        }
    }

    // ---- events ----

    fn log(&mut self, text: String, out: &mut CodecOut) {
        if self.now_s - self.log_window_s >= 1.0 {
            if self.logs_suppressed > 0 {
                out.events.push(Event::Log(format!("{} more lines not shown", self.logs_suppressed)));
            }
            self.log_window_s = self.now_s;
            self.logs_in_window = 0;
            self.logs_suppressed = 0;
        }
        if self.logs_in_window < LOG_BUDGET_PER_S {
            self.logs_in_window += 1;
            out.events.push(Event::Log(text));
        } else {
            self.logs_suppressed += 1;
        }
    }

    fn update_state(&mut self, out: &mut CodecOut) {
        let state = match (&self.fault, self.enabled) {
            (Some(text), _) => DriveState::Fault(text.clone()),
            (None, Some(true)) => DriveState::Enabled,
            (None, Some(false)) => DriveState::Idle,
            (None, None) => return,
        };
        if self.reported_state.as_ref() != Some(&state) {
            self.reported_state = Some(state.clone());
            out.events.push(Event::State(state));
        }
    }

    /// The drivebench mode the drive is in, if it maps onto one.
    fn active_mode(&self) -> Option<ControlMode> {
        match self.motion? {
            0 => match self.torque? {
                TORQUE_VOLTAGE => None,
                _ => Some(ControlMode::Current),
            },
            1 | 3 => Some(ControlMode::Speed),
            2 | 4 | 5 => Some(ControlMode::Position),
            _ => None,
        }
    }

    fn active_label(&self) -> String {
        match (self.motion, self.torque) {
            (None, _) => "an unknown".into(),
            (Some(0), Some(TORQUE_VOLTAGE)) => "voltage torque".into(),
            (Some(0), None) => "torque (controller unknown)".into(),
            (Some(m), _) => match self.active_mode() {
                Some(mode) => mode.label().into(),
                None => MOTION_NAMES.get(usize::from(m)).copied().unwrap_or("an unknown").into(),
            },
        }
    }

    fn update_mode(&mut self, out: &mut CodecOut) {
        if self.motion == Some(0) && self.torque == Some(TORQUE_VOLTAGE) && !self.voltage_mode_noted {
            self.voltage_mode_noted = true;
            self.log(
                "the drive uses voltage torque control (T0): its torque target is in volts, so drivebench's \
                 current mode is not available"
                    .into(),
                out,
            );
        }
        let (Some(mode), Some(target)) = (self.active_mode(), self.target) else { return };
        let setpoint = to_canonical(mode, target);
        if !setpoint.is_finite() {
            return;
        }
        let same = self.reported_mode.is_some_and(|(m, s)| {
            m == mode && (s - setpoint).abs() <= 1e-6 * s.abs().max(setpoint.abs()).max(1.0)
        });
        if !same {
            self.reported_mode = Some((mode, setpoint));
            out.events.push(Event::Mode { mode, setpoint });
        }
    }

    // ---- receiving ----

    fn handle_line(&mut self, raw: &[u8], now_s: f64, out: &mut CodecOut) {
        let text = String::from_utf8_lossy(raw);
        let line = text.trim();
        if line.is_empty() {
            return;
        }
        let parsed = self.classify(line);
        if self.first_line {
            self.first_line = false;
            // The port was opened mid-line: keep the first line only if it answers a request.
            let answers = match &parsed {
                Parsed::Reply { key, .. } => self.in_flight.iter().any(|f| f.key == *key),
                _ => false,
            };
            if !answers {
                return;
            }
        }
        if line.starts_with("MOT:") {
            // The library's debug output while it initialises a motor (after a reset, or `FR`).
            self.log(format!("drive: {line}"), out);
            self.lost_sync(&format!("the drive printed `{line}`"), now_s, out);
            return;
        }
        match parsed {
            Parsed::Stream(values) => self.handle_stream(&values, now_s, out),
            Parsed::Reply { key, value, mode2 } => self.handle_reply(key, &value, mode2, line, now_s, out),
            Parsed::Error2(cmd) => {
                let index = self.in_flight.iter().position(|f| match (cmd, f.key) {
                    (Some(c), Key::Cmd(k, _)) => c == k,
                    (None, Key::Cmd(..)) => true,
                    _ => false,
                });
                let entry = index.and_then(|i| self.in_flight.remove(i));
                self.handle_error(entry, line, out);
                self.lost_sync(&format!("a reply in verbose mode 2 (`{line}`)"), now_s, out);
            }
            Parsed::Scan(entry) => self.log(format!("commander id {entry}"), out),
            Parsed::Warning => self.lost_sync("a verbose mode 2 warning", now_s, out),
            Parsed::Unknown => self.log(format!("drive: {line}"), out),
        }
    }

    fn classify(&self, line: &str) -> Parsed {
        if let Some(values) = parse_stream(line) {
            return Parsed::Stream(values);
        }
        if let Some(parsed) = parse_mode2(line) {
            return parsed;
        }
        let bytes = line.as_bytes();
        match bytes[0] {
            b'@' => return Parsed::Reply { key: Key::Verbose, value: line[1..].into(), mode2: false },
            b'#' => return Parsed::Reply { key: Key::Decimal, value: line[1..].into(), mode2: false },
            b'?' => return Parsed::Scan(line[1..].into()),
            _ => {}
        }
        if bytes[0] == self.motor && bytes.len() > 1 {
            let c1 = bytes[1];
            if c1.is_ascii_uppercase() {
                let c2 = bytes.get(2).copied().unwrap_or(0);
                if c2.is_ascii_uppercase() {
                    return Parsed::Reply { key: Key::Cmd(c1, c2), value: line[3..].into(), mode2: false };
                }
                return Parsed::Reply { key: Key::Cmd(c1, 0), value: line[2..].into(), mode2: false };
            }
            return Parsed::Reply { key: Key::Target, value: line[1..].into(), mode2: false };
        }
        if line == "on!" || line == "off!" {
            return Parsed::Reply { key: Key::Verbose, value: line.into(), mode2: true };
        }
        Parsed::Unknown
    }

    fn take_in_flight(&mut self, key: Key) -> Option<InFlight> {
        let index = self.in_flight.iter().position(|f| f.key == key)?;
        self.in_flight.remove(index)
    }

    fn handle_reply(
        &mut self,
        key: Key,
        value: &str,
        mode2: bool,
        line: &str,
        now_s: f64,
        out: &mut CodecOut,
    ) {
        let entry = self.take_in_flight(key);
        self.consecutive_timeouts = 0;
        if mode2 {
            // Forgotten first: the value this reply carries is news from the drive as it is now.
            self.lost_sync(&format!("a reply in verbose mode 2 (`{line}`)"), now_s, out);
        }
        let kind = entry.as_ref().map_or(Kind::Untracked, |e| e.kind);
        let value = value.trim();
        if value.ends_with("err") {
            self.handle_error(entry, line, out);
            return;
        }
        match key {
            Key::Verbose => {
                if value == "machine" {
                    if !self.verbose3 {
                        self.log(format!("Commander in machine-readable mode (motor {})", self.id()), out);
                    }
                    self.verbose3 = true;
                    self.resync_logged = false;
                    // Confirmed: a later fall back to mode 2 (a board reset) is answered at once.
                    self.last_verbose_try_s = None;
                } else if !mode2 {
                    self.lost_sync(
                        &format!("verbose mode reads `{value}`, not machine-readable"),
                        now_s,
                        out,
                    );
                }
            }
            Key::Decimal => {}
            Key::Target => match parse_number(value) {
                Some(v) => {
                    self.target = Some(v);
                    self.update_mode(out);
                }
                None if entry.is_some() => self.log(format!("target reads `{value}`"), out),
                None => self.log(format!("drive: {line}"), out),
            },
            Key::Cmd(b'E', 0) => self.handle_status(kind, value, out),
            Key::Cmd(b'C', 0) => match MOTION_NAMES.iter().position(|n| *n == value) {
                Some(m) => {
                    self.motion = Some(m as u8);
                    if m != 0 {
                        self.voltage_mode_noted = false;
                    }
                    self.update_mode(out);
                }
                None => self.log(format!("unknown motion type `{value}`"), out),
            },
            Key::Cmd(b'T', 0) => match TORQUE_NAMES.iter().position(|n| *n == value) {
                Some(t) => {
                    self.torque = Some(t as u8);
                    self.update_mode(out);
                }
                None => self.log(format!("unknown torque control type `{value}`"), out),
            },
            Key::Cmd(b'M', b'S') => match parse_bitmap(value) {
                Some(bits) => {
                    if self.bitmap != Some(bits) {
                        self.log(format!("monitoring variables {value}"), out);
                    }
                    self.bitmap = Some(bits);
                    self.stream_mismatches = 0;
                    self.stream_seen_s = self.stream_seen_s.max(now_s);
                }
                None => self.log(format!("monitoring variables read `{value}`"), out),
            },
            Key::Cmd(b'M', b'G') => {
                if kind == Kind::MonitorAll {
                    self.handle_monitor_all(value, now_s, out);
                }
            }
            Key::Cmd(cmd, sub) => match find_param_cmd(cmd, sub) {
                Some(index) if parse_number(value).is_some() || entry.is_some() => {
                    self.handle_param(index, kind, value, out)
                }
                _ if entry.is_none() => self.log(format!("drive: {line}"), out),
                _ => {}
            },
        }
    }

    fn handle_status(&mut self, kind: Kind, value: &str, out: &mut CodecOut) {
        let enabled = match value {
            "0" => false,
            "1" => true,
            _ => {
                self.log(format!("enable flag reads `{value}`"), out);
                return;
            }
        };
        match kind {
            // The motor is off only for the moment of a mode change; the state stays as it is.
            Kind::Status(StatusIntent::Pause) => return,
            Kind::Status(StatusIntent::Enable) if !enabled => {
                out.events.push(Event::Refused("enable: the motor still reads disabled (E = 0)".into()));
            }
            Kind::Status(StatusIntent::Resume) if !enabled => {
                out.events.push(Event::Refused(
                    "mode change: the motor did not enable again afterwards (E reads 0)".into(),
                ));
            }
            Kind::Status(StatusIntent::Enable) => self.fault = None,
            Kind::Status(StatusIntent::Disable) if !enabled => self.stop_unconfirmed = false,
            Kind::Status(StatusIntent::Disable) if self.stop_unconfirmed => {
                out.events.push(Event::Refused(
                    "stop not confirmed yet: the motor still reads enabled (E = 1) after `E0`; sending it again"
                        .into(),
                ));
                let again = self.in_flight.iter().any(|f| f.kind == Kind::Status(StatusIntent::Disable));
                if !again {
                    let now_s = self.now_s;
                    self.send_stop(now_s, out);
                }
            }
            _ => {}
        }
        if self.commanded_enabled.is_none() {
            self.commanded_enabled = Some(enabled);
        }
        if !enabled
            && self.enabled == Some(true)
            && self.commanded_enabled == Some(true)
            && kind != Kind::Status(StatusIntent::Disable)
            && kind != Kind::Status(StatusIntent::Resume)
        {
            self.fault = Some(
                "the motor disabled itself (E reads 0) without a disable command; \
                 SimpleFOC does not report a cause"
                    .into(),
            );
            self.commanded_enabled = Some(false);
        }
        self.enabled = Some(enabled);
        self.update_state(out);
    }

    /// Why a catalogue entry is not in its catalogue unit in the drive's present mode: the
    /// velocity PID limit (`VL`) is a voltage under voltage torque control, and the angle
    /// controller's limit (`AL`) is a current or voltage in angle_nocascade mode, where the
    /// angle controller drives the torque directly.
    fn unit_problem(&self, index: usize) -> Option<String> {
        let d = &PARAMS[index];
        match (d.cmd, d.sub) {
            (b'V', b'L') => match self.torque {
                None => Some("the drive's torque controller is not known yet, so VL may be in volts".into()),
                Some(TORQUE_VOLTAGE) => {
                    Some("the drive uses voltage torque control, where VL is a voltage, not a current".into())
                }
                Some(_) => None,
            },
            (b'A', b'L') => match self.motion {
                None => Some("the drive's motion mode is not known yet, so AL may not be a speed".into()),
                Some(5) => Some(
                    "in angle_nocascade mode the angle controller's output limit (AL) is a current or voltage, \
                     not a speed"
                        .into(),
                ),
                Some(_) => None,
            },
            _ => None,
        }
    }

    fn handle_param(&mut self, index: usize, kind: Kind, value: &str, out: &mut CodecOut) {
        let d = &PARAMS[index];
        let Some(raw) = parse_number(value) else {
            let text = format!("{} reads `{value}`, not a finite number", d.key);
            if kind == Kind::ParamWrite(index) {
                out.events.push(Event::Refused(text));
            } else {
                self.log(text, out);
            }
            return;
        };
        if let Some(problem) = self.unit_problem(index) {
            self.log(format!("{}: {problem}, so {raw} is not shown as {}", d.key, d.unit), out);
            if kind == Kind::ParamWrite(index) {
                out.events.push(Event::Refused(format!("{}: not confirmed in {}", d.key, d.unit)));
            }
            return;
        }
        let value = if d.rpm { raw * RPM_PER_RAD_S } else { raw };
        if !value.is_finite() {
            let text = format!("{} reads `{value}` {}, beyond what drivebench can show", d.key, d.unit);
            if kind == Kind::ParamWrite(index) {
                out.events.push(Event::Refused(text));
            } else {
                self.log(text, out);
            }
            return;
        }
        let key = d.key.to_string();
        if kind == Kind::ParamWrite(index) {
            out.events.push(Event::ParamWritten { key, value });
            // The library derives these limits from the one just written.
            let voltage = self.torque == Some(TORQUE_VOLTAGE);
            let follow: &[(u8, u8)] = match (d.cmd, d.sub) {
                (b'L', b'C') if !voltage => &[(b'V', b'L')],
                (b'L', b'U') => &[(b'Q', b'L'), (b'D', b'L')],
                (b'L', b'V') => &[(b'A', b'L')],
                _ => &[],
            };
            let reads: Vec<Request> = follow
                .iter()
                .filter_map(|&(c, s)| find_param_cmd(c, s))
                .map(|i| self.param_read_request(i))
                .collect();
            self.enqueue_first(reads);
        } else {
            out.events.push(Event::ParamValue { key, value });
        }
    }

    fn handle_error(&mut self, entry: Option<InFlight>, reply: &str, out: &mut CodecOut) {
        match entry {
            Some(InFlight { kind: Kind::ParamWrite(index), line, .. }) => out.events.push(Event::Refused(
                format!("writing {} (`{line}`) failed: the drive answered `{reply}`", PARAMS[index].key),
            )),
            Some(InFlight { line, .. }) => self.log(format!("`{line}`: the drive answered `{reply}`"), out),
            None => self.log(format!("drive: {reply}"), out),
        }
    }

    fn handle_stream(&mut self, values: &[Option<f64>], now_s: f64, out: &mut CodecOut) {
        self.stream_seen_s = now_s;
        if self.polling {
            self.polling = false;
            self.log("monitoring stream resumed; polling stopped".into(), out);
        }
        let Some(bitmap) = self.bitmap else {
            self.reselect_stream(now_s, out);
            return;
        };
        let selected: Vec<usize> = (0..7).filter(|&i| bitmap & MONITOR_BITS[i] != 0).collect();
        if selected.len() != values.len() {
            self.stream_mismatches = self.stream_mismatches.saturating_add(1);
            if self.stream_mismatches == 5 {
                self.log(
                    format!(
                        "stream lines have {} values, expected {}: selecting the variables again",
                        values.len(),
                        selected.len()
                    ),
                    out,
                );
            }
            if self.stream_mismatches >= 5 {
                // Rate-limited inside: again every 2 s until the widths agree.
                self.reselect_stream(now_s, out);
            }
            return;
        }
        self.stream_mismatches = 0;
        let mut state = [None; 7];
        for (&slot, &value) in selected.iter().zip(values) {
            state[slot] = value;
        }
        // The stream carries currents in mA.
        for slot in [3, 4] {
            state[slot] = state[slot].map(|v| v / 1000.0);
        }
        self.emit_state(&state, now_s, out);
    }

    fn reselect_stream(&mut self, now_s: f64, out: &mut CodecOut) {
        if self.last_monitor_set_s.is_some_and(|t| now_s - t < 2.0) || self.pending(Kind::MonitorSet) {
            return;
        }
        self.last_monitor_set_s = Some(now_s);
        let request =
            self.motor_request(&format!("MS{MONITOR_BITMAP}"), Kind::MonitorSet, Some(Key::Cmd(b'M', b'S')));
        self.enqueue(request, out);
    }

    fn handle_monitor_all(&mut self, value: &str, now_s: f64, out: &mut CodecOut) {
        let fields: Vec<&str> = value.split(';').collect();
        if fields.len() != 7 {
            self.log(format!("MMG7 reply with {} values: `{value}`", fields.len()), out);
            return;
        }
        let mut state = [None; 7];
        for (slot, field) in fields.iter().enumerate() {
            state[slot] = parse_number(field);
        }
        self.emit_state(&state, now_s, out);
    }

    /// Samples from target, Uq, Ud, Iq, Id (A), velocity (rad/s), angle (rad).
    fn emit_state(&mut self, state: &[Option<f64>; 7], now_s: f64, out: &mut CodecOut) {
        let mut push = |signal: u16, value: Option<f64>| {
            if let Some(value) = value.filter(|v| v.is_finite()) {
                out.samples.push(Sample { t_s: now_s, signal, value });
            }
        };
        push(SIG_SPEED, state[5].map(|v| v * RPM_PER_RAD_S));
        push(SIG_CURRENT, state[3]);
        push(SIG_POSITION, state[6].map(|v| v / TAU));
        push(SIG_UQ, state[1]);
        push(SIG_UD, state[2]);
        push(SIG_ID, state[4]);
        let target_signal = match (self.active_mode(), self.motion, self.torque) {
            (Some(ControlMode::Speed), ..) => Some((SIG_SPEED_SP, RPM_PER_RAD_S)),
            (Some(ControlMode::Position), ..) => Some((SIG_POSITION_SP, 1.0 / TAU)),
            (Some(ControlMode::Current), ..) => Some((SIG_CURRENT_SP, 1.0)),
            (None, Some(0), Some(TORQUE_VOLTAGE)) => Some((SIG_UQ_SP, 1.0)),
            _ => None,
        };
        if let Some((signal, scale)) = target_signal {
            push(signal, state[0].map(|v| v * scale));
        }
        if let Some(angle) = state[6].filter(|v| v.is_finite()) {
            let velocity = state[5].filter(|v| v.is_finite()).unwrap_or(0.0);
            self.last_angle = Some((angle, velocity, now_s));
        }
    }

    // ---- commands ----

    /// Mode change: the new motion type plus a target that starts from rest (0 rad/s, 0 A)
    /// or from the present angle.
    ///
    /// `C<n>` and the target are two commands, and the board runs its loops between them: for
    /// that moment the old target number would act in the new unit (600 rad/s becoming a
    /// 600 rad angle target; the library keeps the target across most motion changes). No
    /// ordering of the two avoids that in general: no target number is safe in both units
    /// (0 is a stop as a speed or torque, but a move to angle 0 as an angle, and the present
    /// angle is a speed as a speed target). So a motor that is or may be running is switched
    /// off around the change, `E0`, `C<n>`, target, `E1`: while disabled the library runs no
    /// loop, and `E1` starts the loops afresh on the new target in the new unit. The motor
    /// coasts for the few milliseconds the four lines take. A disabled motor needs no wrap;
    /// while the enable flag is not known the change is refused.
    fn set_mode(&mut self, mode: ControlMode, now_s: f64, out: &mut CodecOut) -> Result<(), CodecError> {
        if self.active_mode() == Some(mode) {
            let setpoint = self.target.map_or(0.0, |t| to_canonical(mode, t));
            self.reported_mode = Some((mode, setpoint));
            out.events.push(Event::Mode { mode, setpoint });
            return Ok(());
        }
        let (code, target) = match mode {
            ControlMode::Current => {
                match self.torque {
                    None => {
                        return Err(CodecError::Invalid(
                            "current mode: the drive's torque controller is not known yet (no reply to T)"
                                .into(),
                        ));
                    }
                    Some(TORQUE_VOLTAGE) => return Err(voltage_mode_error()),
                    Some(_) => {}
                }
                (0, 0.0)
            }
            ControlMode::Speed => (1, 0.0),
            ControlMode::Position => {
                let Some((angle, velocity, seen_s)) =
                    self.last_angle.filter(|a| now_s - a.2 <= ANGLE_FRESH_S)
                else {
                    return Err(CodecError::Invalid(
                        "position mode: the shaft angle is not known yet (no recent telemetry), so the \
                         target could not start at the present position"
                            .into(),
                    ));
                };
                (2, angle + velocity * (now_s - seen_s).max(0.0))
            }
        };
        let motion = self.motor_request(&format!("C{code}"), Kind::Motion, Some(Key::Cmd(b'C', 0)));
        let target = self.target_request(Some(target)).ok_or_else(|| {
            CodecError::Invalid(format!("the target {target} cannot be written in 18 characters"))
        })?;
        let is_enable = |k: &Kind| matches!(k, Kind::Status(StatusIntent::Enable | StatusIntent::Resume));
        let enabling = self.queue.iter().any(|r| is_enable(&r.kind))
            || self.in_flight.iter().any(|r| is_enable(&r.kind));
        // An enable flag not read yet (a mode chosen right after connecting) counts as running:
        // the change is then made with the motor switched off, the safe side.
        let may_run = self.enabled.is_none_or(|enabled| enabled) || enabling;
        // On again afterwards only if drivebench wants it running (not during a stop); else the
        // `E0` is a plain disable.
        let resume = may_run && self.commanded_enabled == Some(true) && !self.stop_unconfirmed;
        // Outside the window: the lines must reach the drive together, in this order.
        if may_run {
            let intent = if resume { StatusIntent::Pause } else { StatusIntent::Disable };
            let off = self.status_request(intent);
            self.send_now(off, now_s, out);
        }
        self.send_now(motion, now_s, out);
        self.send_now(target, now_s, out);
        if resume {
            let on = self.status_request(StatusIntent::Resume);
            self.send_now(on, now_s, out);
        }
        // Known again from the replies: until then a setpoint would be in an unknown unit.
        self.motion = None;
        self.target = None;
        Ok(())
    }

    fn set_setpoint(&mut self, mode: ControlMode, value: f64, out: &mut CodecOut) -> Result<(), CodecError> {
        if !value.is_finite() {
            return Err(CodecError::Invalid(format!("{} setpoint is not a finite number", mode.label())));
        }
        if mode == ControlMode::Current && self.motion == Some(0) && self.torque == Some(TORQUE_VOLTAGE) {
            return Err(voltage_mode_error());
        }
        if self.motion.is_none() {
            return Err(CodecError::WrongMode {
                wanted: mode.label().into(),
                active: "a not yet known".into(),
            });
        }
        if self.active_mode() != Some(mode) {
            return Err(CodecError::WrongMode { wanted: mode.label().into(), active: self.active_label() });
        }
        let vendor = from_canonical(mode, value);
        let request = self.target_request(Some(vendor)).ok_or_else(|| {
            CodecError::Invalid(format!("the setpoint {value} {} does not fit in a command", mode.unit()))
        })?;
        // At most one target waits: a newer setpoint replaces one not sent yet.
        self.queue.retain(|r| r.kind != Kind::TargetWrite);
        self.queue.push_front(request);
        self.target = Some(vendor);
        self.reported_mode = Some((mode, value));
        out.events.push(Event::Mode { mode, setpoint: value });
        Ok(())
    }

    fn write_param(&mut self, key: &str, value: f64, out: &mut CodecOut) -> Result<(), CodecError> {
        let index = find_param(key).ok_or_else(|| CodecError::UnknownParam(key.into()))?;
        let d = &PARAMS[index];
        if !value.is_finite() {
            return Err(CodecError::Invalid(format!("{key}: the value is not a finite number")));
        }
        if let Some(problem) = self.unit_problem(index) {
            return Err(CodecError::Invalid(format!("{key} not written: {problem}")));
        }
        let vendor = if d.rpm { value * RAD_S_PER_RPM } else { value };
        let prefix = format!("{}{}{}", self.id(), char::from(d.cmd), char::from(d.sub));
        let line = encode_value(&prefix, vendor)
            .ok_or_else(|| CodecError::Invalid(format!("{key} = {value} does not fit in a command")))?;
        self.enqueue(Request { line, kind: Kind::ParamWrite(index), key: Some(Key::Cmd(d.cmd, d.sub)) }, out);
        Ok(())
    }

    /// What a console line does, by the Commander's parse rules.
    fn console_effect(&self, text: &str) -> RawIntent {
        let bytes = text.as_bytes();
        if bytes.len() > MAX_COMMAND_CHARS {
            return RawIntent::Guarded(format!(
                "the line is longer than {MAX_COMMAND_CHARS} characters: the Commander would drop its first 20 \
                 bytes and run the rest as a command"
            ));
        }
        if bytes.iter().any(|b| b.is_ascii_control()) {
            return RawIntent::Guarded("the line holds control characters (several commands)".into());
        }
        if bytes.first() != Some(&self.motor) {
            return RawIntent::Other;
        }
        let rest = &text[1..];
        let c0 = rest.as_bytes().first().copied().unwrap_or(0);
        if c0.is_ascii_digit() || c0 == b'-' || c0 == b'+' {
            if rest.split(' ').any(is_hex_number) {
                return RawIntent::Guarded(HEX_REASON.into());
            }
            let mut values = rest.split(' ').filter(|t| !t.is_empty());
            let target = c_atof(values.next().unwrap_or(""));
            if values.next().is_some() {
                return RawIntent::Guarded(
                    "a second value on the target line sets the drive's velocity, current or voltage limit; \
                     use the limit parameters instead"
                        .into(),
                );
            }
            if !target.is_finite() {
                return RawIntent::Guarded("the target is not a finite number".into());
            }
            return match self.active_mode() {
                Some(mode) => RawIntent::Setpoint(mode, to_canonical(mode, target)),
                None if self.motion == Some(0) && self.torque == Some(TORQUE_VOLTAGE) => RawIntent::Guarded(
                    "the drive uses voltage torque control: this target is a voltage the project limits cannot check"
                        .into(),
                ),
                None => RawIntent::Guarded(
                    "the drive's motion mode is not known, so the unit of this target is not known".into(),
                ),
            };
        }
        let rb = rest.as_bytes();
        let cmd = c0;
        let sub = rb.get(1).copied().unwrap_or(0);
        // Anything after the letter makes these a write (the library reads any text as a number,
        // an empty one as 0), except the sub-commands that only read or set a loop rate.
        let has_more = rb.len() > 1;
        match cmd {
            b'C' if has_more && !matches!(sub, b'D' | b'T') => {
                return RawIntent::Guarded(
                    "`C<n>` changes the motion mode and with it the unit of the target (rad/s, rad, A or V); \
                     use the mode control, which changes it safely"
                        .into(),
                );
            }
            b'T' if has_more && sub != b'T' => {
                return RawIntent::Guarded(
                    "`T<n>` changes the torque controller and with it the unit of torque targets and limits \
                     (A or V); use the mode control"
                        .into(),
                );
            }
            b'F' if has_more => {
                return RawIntent::Guarded(
                    "`F` re-initialises FOC, measures the motor or tunes the current loop: it applies voltages \
                     and moves the motor"
                        .into(),
                );
            }
            b'S' if matches!(sub, b'M' | b'E') && rb.len() > 2 => {
                return RawIntent::Guarded(
                    "`SM`/`SE` write the sensor offset or the electrical zero angle: a wrong value makes the \
                     motor run away or stall"
                        .into(),
                );
            }
            _ => {}
        }
        if !sub.is_ascii_uppercase() {
            return RawIntent::Other;
        }
        let value_text = &rest[2..];
        let Some(index) = find_param_cmd(cmd, sub) else { return RawIntent::Other };
        if value_text.is_empty() {
            return RawIntent::Other;
        }
        let d = &PARAMS[index];
        if is_hex_number(value_text) {
            return RawIntent::Guarded(format!("{}: {HEX_REASON}", d.key));
        }
        if let Some(problem) = self.unit_problem(index) {
            return RawIntent::Guarded(format!("{}: {problem}", d.key));
        }
        let value = c_atof(value_text);
        if !value.is_finite() {
            return RawIntent::Guarded(format!("{}: the value is not a finite number", d.key));
        }
        RawIntent::Param(d.key.into(), if d.rpm { value * RPM_PER_RAD_S } else { value })
    }
}

fn voltage_mode_error() -> CodecError {
    CodecError::Invalid(
        "current mode is not available: the drive uses voltage torque control (T0), where the torque target \
         is in volts; it needs a current-sensing torque controller (T1, T2 or T3) set up in the sketch"
            .into(),
    )
}

/// A canonical setpoint from the drive's target unit.
fn to_canonical(mode: ControlMode, target: f64) -> f64 {
    match mode {
        ControlMode::Current => target,
        ControlMode::Speed => target * RPM_PER_RAD_S,
        ControlMode::Position => target / TAU,
    }
}

fn from_canonical(mode: ControlMode, value: f64) -> f64 {
    match mode {
        ControlMode::Current => value,
        ControlMode::Speed => value * RAD_S_PER_RPM,
        ControlMode::Position => value * TAU,
    }
}

/// `prefix` and the value with as many of 6 decimals as fit in 18 characters.
fn encode_value(prefix: &str, value: f64) -> Option<String> {
    if !value.is_finite() {
        return None;
    }
    (0..=REPLY_DECIMALS)
        .rev()
        .map(|d| format!("{prefix}{}", format_decimal(value, d)))
        .find(|line| line.len() <= MAX_COMMAND_CHARS)
}

/// A number as Arduino prints it: optional sign, digits, optional decimals. `nan`, `inf`,
/// `ovf` and exponents are not numbers here.
fn parse_number(text: &str) -> Option<f64> {
    let text = text.trim();
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    if body.is_empty()
        || !body.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || body.matches('.').count() > 1
    {
        return None;
    }
    if !body.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A stream field: a number, or one of Arduino's non-numbers (kept as `None`).
fn parse_stream_field(field: &str) -> Option<Option<f64>> {
    match field {
        "nan" | "inf" | "-inf" | "ovf" => Some(None),
        _ => parse_number(field).map(Some),
    }
}

/// A monitoring line: tab-separated numbers only.
fn parse_stream(line: &str) -> Option<Vec<Option<f64>>> {
    let first = line.as_bytes()[0];
    if !(first.is_ascii_digit() || first == b'-' || first == b'.' || matches!(first, b'n' | b'i' | b'o')) {
        return None;
    }
    line.split('\t').map(|f| parse_stream_field(f.trim())).collect()
}

/// `MMS` read-back: seven `0`/`1`.
fn parse_bitmap(value: &str) -> Option<u8> {
    if value.len() != 7 {
        return None;
    }
    value.bytes().try_fold(0u8, |acc, b| match b {
        b'0' => Some(acc << 1),
        b'1' => Some((acc << 1) | 1),
        _ => None,
    })
}

/// Replies in verbose mode 2 (human labels, no motor id).
fn parse_mode2(line: &str) -> Option<Parsed> {
    let reply = |key, value: &str| Some(Parsed::Reply { key, value: value.to_string(), mode2: true });
    if line.starts_with("Warn: \\r detected!") {
        return Some(Parsed::Warning);
    }
    if line == "unknown cmd err" {
        return Some(Parsed::Error2(None));
    }
    if let Some(v) = line.strip_prefix("Verb:") {
        return reply(Key::Verbose, v);
    }
    if let Some(v) = line.strip_prefix("Decimal:") {
        return reply(Key::Decimal, v);
    }
    if let Some(v) = line.strip_prefix("Target: ") {
        return reply(Key::Target, v);
    }
    if let Some(v) = line.strip_prefix("Status: ") {
        return reply(Key::Cmd(b'E', 0), v);
    }
    if let Some(v) = line.strip_prefix("Motion:") {
        if let Some(v) = v.strip_prefix(" downsample: ") {
            return reply(Key::Cmd(b'C', b'D'), v);
        }
        if let Some(v) = v.strip_prefix(" time: ") {
            return reply(Key::Cmd(b'C', b'T'), v);
        }
        return reply(Key::Cmd(b'C', 0), v);
    }
    if let Some(v) = line.strip_prefix("Torque: ") {
        if let Some(v) = v.strip_prefix(" time: ") {
            return reply(Key::Cmd(b'T', b'T'), v);
        }
        return reply(Key::Cmd(b'T', 0), v);
    }
    if let Some(v) = line.strip_prefix("Limits| ") {
        for (label, sub) in [("curr: ", b'C'), ("volt: ", b'U'), ("vel: ", b'V')] {
            if let Some(v) = v.strip_prefix(label) {
                return reply(Key::Cmd(b'L', sub), v);
            }
        }
        return Some(Parsed::Error2(Some(b'L')));
    }
    for (label, cmd) in
        [("PID curr q| ", b'Q'), ("PID curr d| ", b'D'), ("PID vel| ", b'V'), ("PID angle| ", b'A')]
    {
        if let Some(v) = line.strip_prefix(label) {
            for (name, sub) in [
                ("P: ", b'P'),
                ("I: ", b'I'),
                ("D: ", b'D'),
                ("ramp: ", b'R'),
                ("limit: ", b'L'),
                ("Tf: ", b'F'),
            ] {
                if let Some(v) = v.strip_prefix(name) {
                    return reply(Key::Cmd(cmd, sub), v);
                }
            }
            return Some(Parsed::Error2(Some(cmd)));
        }
    }
    if let Some(v) = line.strip_prefix("Monitor | ") {
        for (name, sub) in [("downsample: ", b'D'), ("decimal: ", b'#')] {
            if let Some(v) = v.strip_prefix(name) {
                return reply(Key::Cmd(b'M', sub), v);
            }
        }
        if v == "clear" {
            return reply(Key::Cmd(b'M', b'C'), v);
        }
        for name in ["target: ", "Vq: ", "Vd: ", "Cq: ", "Cd: ", "vel: ", "angle: ", "all: "] {
            if let Some(v) = v.strip_prefix(name) {
                return reply(Key::Cmd(b'M', b'G'), v);
            }
        }
        if parse_bitmap(v).is_some() {
            return reply(Key::Cmd(b'M', b'S'), v);
        }
        return Some(Parsed::Error2(Some(b'M')));
    }
    None
}

const HEX_REASON: &str = "the number is in hexadecimal form (`0x…`), which the drive's C library may read \
                          as a hexadecimal float, a value other than the one checked";

/// Whether a number starts (after C white space and a sign) with `0x`: C's `strtod` reads
/// hexadecimal floats (`0x1p4` = 16, `0x10` = 16) where [`c_atof`] sees 0.
fn is_hex_number(text: &str) -> bool {
    let t = text.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let t = t.strip_prefix(['-', '+']).unwrap_or(t);
    let b = t.as_bytes();
    b.len() >= 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X')
}

/// What the Commander's `atof` makes of a console value (decimal, exponent, `inf`, `nan`).
fn c_atof(text: &str) -> f64 {
    let t = text.trim_start();
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    let negative = t.starts_with('-');
    let lower = unsigned.to_ascii_lowercase();
    if lower.starts_with("inf") {
        return if negative { f64::NEG_INFINITY } else { f64::INFINITY };
    }
    if lower.starts_with("nan") {
        return f64::NAN;
    }
    // The longest prefix that parses.
    let sign_len = t.len() - unsigned.len();
    let candidate: String = t
        .char_indices()
        .take_while(|&(i, c)| {
            c.is_ascii_digit()
                || c == '.'
                || c == 'e'
                || c == 'E'
                || ((c == '-' || c == '+') && i <= sign_len)
        })
        .map(|(_, c)| c)
        .collect();
    (1..=candidate.len()).rev().find_map(|n| candidate[..n].parse::<f64>().ok()).unwrap_or(0.0)
}

impl Codec for SimpleFocCodec {
    fn signals(&self) -> Vec<SignalSpec> {
        vec![
            SignalSpec::new("speed_rpm", "rpm"),
            SignalSpec::new("current_a", "A"),
            SignalSpec::new("position_rev", "rev"),
            SignalSpec::new("voltage_q_v", "V"),
            SignalSpec::new("voltage_d_v", "V"),
            SignalSpec::new("current_d_a", "A"),
            SignalSpec::new("speed_setpoint_rpm", "rpm"),
            SignalSpec::new("current_setpoint_a", "A"),
            SignalSpec::new("position_setpoint_rev", "rev"),
            SignalSpec::new("voltage_q_setpoint_v", "V"),
        ]
    }

    fn params(&self) -> Vec<ParamSpec> {
        PARAMS.iter().map(|d| ParamSpec::new(d.key, d.label, d.unit, d.min, d.max, d.help)).collect()
    }

    fn start(&mut self, now_s: f64, out: &mut CodecOut) {
        *self = SimpleFocCodec::new(self.id());
        self.now_s = now_s;
        self.stream_seen_s = now_s;
        self.next_status_s = now_s + STATUS_POLL_S;
        self.last_verbose_try_s = Some(now_s);
        self.last_monitor_set_s = Some(now_s);
        // An empty line first: whatever a previous session left in the drive's buffer runs
        // (or is dropped) on its own instead of corrupting `@3`.
        out.tx.push(b'\n');
        let mut requests = self.setup_requests();
        requests.push(self.motor_request("T", Kind::Torque, Some(Key::Cmd(b'T', 0))));
        requests.push(self.motor_request("C", Kind::Motion, Some(Key::Cmd(b'C', 0))));
        if let Some(r) = self.target_request(None) {
            requests.push(r);
        }
        requests.push(self.status_request(StatusIntent::Read));
        for request in requests {
            self.enqueue(request, out);
        }
        self.flush(now_s, out);
    }

    fn command(&mut self, cmd: &Command, now_s: f64, out: &mut CodecOut) -> Result<(), CodecError> {
        self.now_s = now_s;
        let result = match cmd {
            Command::Connect | Command::Disconnect => Ok(()),
            Command::EStop => {
                self.estop(now_s, out);
                Ok(())
            }
            Command::Enable => {
                self.commanded_enabled = Some(true);
                self.stop_unconfirmed = false;
                let request = self.status_request(StatusIntent::Enable);
                self.enqueue_first(vec![request]);
                Ok(())
            }
            Command::Disable => {
                self.stop_motor(false, now_s, out);
                Ok(())
            }
            Command::ResetFaults => {
                // Nothing latches in the drive; forget the inferred fault and read the flag.
                self.fault = None;
                if self.enabled == Some(false) {
                    self.commanded_enabled = Some(false);
                }
                let request = self.status_request(StatusIntent::Read);
                self.enqueue_first(vec![request]);
                self.update_state(out);
                Ok(())
            }
            Command::SetMode(mode) => self.set_mode(*mode, now_s, out),
            Command::SetSetpoint(mode, value) => self.set_setpoint(*mode, *value, out),
            Command::ReadParam(key) => {
                let index = find_param(key).ok_or_else(|| CodecError::UnknownParam(key.clone()))?;
                let request = self.param_read_request(index);
                self.enqueue(request, out);
                Ok(())
            }
            Command::WriteParam(key, value) => self.write_param(key, *value, out),
            Command::Raw(text) => {
                self.raw(text, now_s, out);
                Ok(())
            }
            Command::ReadAllParams => {
                for index in 0..PARAMS.len() {
                    let request = self.param_read_request(index);
                    self.enqueue(request, out);
                }
                Ok(())
            }
        };
        self.flush(now_s, out);
        result
    }

    fn estop(&mut self, now_s: f64, out: &mut CodecOut) {
        self.now_s = now_s;
        // With a zero speed or torque target, so that a later enable does not restart the
        // motion. Nothing queued before is sent after it.
        self.stop_motor(true, now_s, out);
        self.flush(now_s, out);
    }

    fn raw(&mut self, text: &str, now_s: f64, out: &mut CodecOut) {
        self.now_s = now_s;
        let line = text.trim_end_matches(['\r', '\n', ' ']);
        if line.is_empty() {
            return;
        }
        if let RawIntent::Guarded(reason) = self.console_effect(line)
            && (line.len() > MAX_COMMAND_CHARS || line.bytes().any(|b| b.is_ascii_control()))
        {
            out.events.push(Event::Refused(format!("`{line}` not sent: {reason}")));
            return;
        }
        let bytes = line.as_bytes();
        if bytes.first() == Some(&self.motor) && bytes.get(1) == Some(&b'E') && bytes.len() > 2 {
            let enable = c_atof(&line[2..]) != 0.0;
            self.commanded_enabled = Some(enable);
            if enable {
                self.stop_unconfirmed = false;
            }
        }
        self.enqueue_first(vec![Request { line: line.to_string(), kind: Kind::Untracked, key: None }]);
        self.flush(now_s, out);
    }

    fn raw_intent(&self, text: &str) -> RawIntent {
        let line = text.trim_end_matches(['\r', '\n', ' ']);
        self.console_effect(line)
    }

    fn feed(&mut self, bytes: &[u8], now_s: f64, out: &mut CodecOut) {
        self.now_s = now_s;
        let mut lines = Vec::new();
        self.splitter.feed(bytes, |line| lines.push(line.to_vec()));
        for line in lines {
            self.handle_line(&line, now_s, out);
        }
        self.flush(now_s, out);
    }

    fn poll(&mut self, now_s: f64, out: &mut CodecOut) {
        self.now_s = now_s;
        // Replies that never came.
        while let Some(index) = self.in_flight.iter().position(|f| now_s - f.sent_s > REPLY_TIMEOUT_S) {
            let Some(entry) = self.in_flight.remove(index) else { break };
            self.consecutive_timeouts += 1;
            match entry.kind {
                Kind::ParamWrite(i) => out.events.push(Event::Refused(format!(
                    "no reply to `{}`: the write of {} is not confirmed",
                    entry.line, PARAMS[i].key
                ))),
                Kind::Status(StatusIntent::Enable) => {
                    out.events.push(Event::Refused(format!("no reply to enable (`{}`)", entry.line)))
                }
                Kind::Status(StatusIntent::Resume) => out.events.push(Event::Refused(format!(
                    "mode change: no reply to `{}`, so the motor may not be enabled again",
                    entry.line
                ))),
                Kind::Status(StatusIntent::Disable) if self.stop_unconfirmed => {
                    out.events.push(Event::Refused(format!(
                        "stop not confirmed yet: no reply to `{}` within {REPLY_TIMEOUT_S} s; sending it again",
                        entry.line
                    )));
                    if !self.in_flight.iter().any(|f| f.kind == Kind::Status(StatusIntent::Disable)) {
                        self.send_stop(now_s, out);
                    }
                }
                Kind::Verbose => self.log(
                    format!(
                        "no reply to `@3`: is the sketch running a Commander with the motor under `{}`?",
                        self.id()
                    ),
                    out,
                ),
                // A reply too long for the line buffer (the drive's decimal places changed) never
                // arrives: assert the decimals again.
                Kind::MonitorAll if !self.pending(Kind::Decimals) => self.enqueue_first(vec![Request {
                    line: format!("#{REPLY_DECIMALS}"),
                    kind: Kind::Decimals,
                    key: Some(Key::Decimal),
                }]),
                Kind::MonitorAll => {}
                _ => self.log(format!("no reply to `{}`", entry.line), out),
            }
        }
        if self.consecutive_timeouts >= 3 {
            self.consecutive_timeouts = 0;
            self.lost_sync("three requests in a row got no reply", now_s, out);
        }
        // Verbose mode until confirmed, and reads of the state still unknown (again when a
        // read timed out).
        self.resync(now_s);
        if now_s >= self.next_status_s {
            self.next_status_s = now_s + STATUS_POLL_S;
            if !self.pending_status() {
                let request = self.status_request(StatusIntent::Read);
                self.enqueue(request, out);
            }
        }
        if now_s - self.stream_seen_s > STREAM_SILENCE_S && !self.polling {
            self.polling = true;
            self.log("no monitoring stream (motor.monitor() not called?): polling MMG7".into(), out);
        }
        // A selection of the same width as ours cannot be told from the stream: select ours
        // again every 2 s while streaming.
        if self.verbose3 && !self.polling && self.last_monitor_set_s.is_none_or(|t| now_s - t >= 2.0) {
            self.reselect_stream(now_s, out);
        }
        if self.polling && !self.pending(Kind::MonitorAll) {
            let request = self.motor_request("MG7", Kind::MonitorAll, Some(Key::Cmd(b'M', b'G')));
            self.enqueue(request, out);
        }
        self.flush(now_s, out);
    }

    fn stop(&mut self, now_s: f64, out: &mut CodecOut) {
        self.now_s = now_s;
        self.stop_motor(false, now_s, out);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sim::device::Device;
    use crate::sim::device::simplefoc::SimpleFocDevice;
    use crate::sim::{SimConfig, SimDrive};

    fn tx(out: &CodecOut) -> String {
        String::from_utf8(out.tx.clone()).unwrap()
    }

    /// A started codec whose set-up requests were all answered in mode 3.
    fn ready_codec(motion: &str, torque: &str) -> SimpleFocCodec {
        let mut codec = SimpleFocCodec::new('M');
        let mut out = CodecOut::new();
        codec.start(0.0, &mut out);
        let replies =
            format!("@machine\r\n#6\r\nMMS1101011\r\nMT{torque}\r\nMC{motion}\r\nM0.000000\r\nME0\r\n");
        for line in replies.split_inclusive('\n') {
            codec.feed(line.as_bytes(), 0.01, &mut out);
        }
        assert!(codec.in_flight.is_empty() && codec.queue.is_empty(), "{:?}", codec.in_flight);
        codec
    }

    /// Answers every request in flight as a board in verbose mode 3 would (motion type,
    /// torque controller and enable flag as given, target 0, parameters 0, writes echoed),
    /// until none is left. Returns everything the codec produced meanwhile.
    fn settle(codec: &mut SimpleFocCodec, motion: &str, torque: &str, enabled: &str, now_s: f64) -> CodecOut {
        let mut all = CodecOut::new();
        for _ in 0..200 {
            let Some(front) = codec.in_flight.front() else { break };
            let line = front.line.clone();
            let reply = match line.as_str() {
                "@3" => "@machine".to_string(),
                "MT" => format!("MT{torque}"),
                "MC" => format!("MC{motion}"),
                "M" => "M0.000000".into(),
                "ME" => format!("ME{enabled}"),
                l if l.len() == 3 && l.bytes().all(|b| b.is_ascii_uppercase()) => format!("{l}0.000000"),
                l => l.to_string(),
            };
            let mut out = CodecOut::new();
            codec.feed(format!("{reply}\r\n").as_bytes(), now_s, &mut out);
            all.tx.extend(out.tx);
            all.events.extend(out.events);
            all.samples.extend(out.samples);
        }
        assert!(codec.in_flight.is_empty(), "{:?}", codec.in_flight);
        all
    }

    fn feed_str(codec: &mut SimpleFocCodec, text: &str, now_s: f64) -> CodecOut {
        let mut out = CodecOut::new();
        codec.feed(text.as_bytes(), now_s, &mut out);
        out
    }

    fn command(codec: &mut SimpleFocCodec, cmd: Command) -> (Result<(), CodecError>, CodecOut) {
        let mut out = CodecOut::new();
        let result = codec.command(&cmd, 0.02, &mut out);
        (result, out)
    }

    #[test]
    fn start_switches_to_machine_readable_and_reads_state() {
        let mut codec = SimpleFocCodec::new('M');
        let mut out = CodecOut::new();
        codec.start(0.0, &mut out);
        assert_eq!(tx(&out), "\n@3\n#6\nMMS1101011\n");
        let mut out = CodecOut::new();
        codec.feed(b"@machine\r\n#6\r\nMMS1101011\r\n", 0.01, &mut out);
        assert_eq!(tx(&out), "MT\nMC\nM\n");
        let mut out = CodecOut::new();
        codec.feed(b"MTfoc curr\r\nMCvel\r\nM0.000000\r\n", 0.02, &mut out);
        assert_eq!(tx(&out), "ME\n");
        assert_eq!(out.events, vec![Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }]);
        let out = feed_str(&mut codec, "ME0\r\n", 0.03);
        assert_eq!(out.events, vec![Event::State(DriveState::Idle)]);
    }

    #[test]
    fn reference_vectors_host_side() {
        let mut codec = ready_codec("vel", "foc curr");
        // MVP1.2 → PID vel| P: 1.200 (mode 2) or MVP1.200 (mode 3).
        let (r, out) = command(&mut codec, Command::WriteParam("velocity_kp".into(), 1.2));
        assert_eq!((r, tx(&out).as_str()), (Ok(()), "MVP1.2\n"));
        let out = feed_str(&mut codec, "PID vel| P: 1.200\r\n", 0.03);
        assert!(
            out.events.contains(&Event::ParamWritten { key: "velocity_kp".into(), value: 1.2 }),
            "{:?}",
            out.events
        );
        assert_eq!(tx(&out), "@3\n#6\nMMS1101011\n", "mode 2 seen: mode 3 asserted again");
        let out = settle(&mut codec, "vel", "foc curr", "0", 0.04);
        assert_eq!(tx(&out), "MT\nMC\nM\nME\n", "and the state read again");
        let (_, out) = command(&mut codec, Command::ReadParam("velocity_kp".into()));
        assert_eq!(tx(&out), "MVP\n");
        let out = feed_str(&mut codec, "MVP1.200\r\n", 0.05);
        assert_eq!(out.events, vec![Event::ParamValue { key: "velocity_kp".into(), value: 1.2 }]);
        // MLV20: the catalogue holds rpm.
        let rpm = 20.0 * RPM_PER_RAD_S;
        let (_, out) = command(&mut codec, Command::WriteParam("velocity_limit_rpm".into(), rpm));
        assert_eq!(tx(&out), "MLV20\n");
        let out = feed_str(&mut codec, "Limits| vel: 20.000\r\n", 0.06);
        assert!(
            out.events.iter().any(|e| matches!(e, Event::ParamWritten { key, value } if key == "velocity_limit_rpm" && (value - rpm).abs() < 1e-9)),
            "{:?}",
            out.events
        );
        settle(&mut codec, "vel", "foc curr", "0", 0.07);
        // ME1 → Status: 1.
        let (_, out) = command(&mut codec, Command::Enable);
        assert_eq!(tx(&out), "ME1\n");
        let out = feed_str(&mut codec, "ME1\r\n", 0.08);
        assert_eq!(out.events, vec![Event::State(DriveState::Enabled)]);
        // MC1 from angle mode: the new mode and a target from rest.
        let mut codec2 = ready_codec("angle", "foc curr");
        let (_, out) = command(&mut codec2, Command::SetMode(ControlMode::Speed));
        assert_eq!(tx(&out), "MC1\nM0\n");
        let out = feed_str(&mut codec2, "Motion:vel\r\nM0.000000\r\n", 0.03);
        assert!(
            out.events.contains(&Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }),
            "{:?}",
            out.events
        );
        // Target: 10.000 (mode 2): the target is taken, the mode read again.
        let out = feed_str(&mut codec, "Target: 10.000\r\n", 0.09);
        assert_eq!(codec.target, Some(10.0));
        assert_eq!(codec.motion, None);
        assert!(tx(&out).starts_with("@3\n") && codec.pending(Kind::Motion), "{}", tx(&out));
        let out = feed_str(&mut codec, "@machine\r\n#6\r\nMMS1101011\r\nMTfoc curr\r\nMCvel\r\n", 0.09);
        assert!(
            out.events.contains(&Event::Mode { mode: ControlMode::Speed, setpoint: 10.0 * RPM_PER_RAD_S }),
            "{:?}",
            out.events
        );
        settle(&mut codec, "vel", "foc curr", "1", 0.09);
        // MMS0000011 and the stream vector.
        let out = feed_str(&mut codec, "Monitor | 0000011\r\n9.9871\t123.4567\r\n", 0.1);
        let samples: Vec<(u16, f64)> = out.samples.iter().map(|s| (s.signal, s.value)).collect();
        assert_eq!(samples.len(), 2, "{samples:?}");
        assert_eq!(samples[0].0, SIG_SPEED);
        assert!((samples[0].1 - 9.9871 * RPM_PER_RAD_S).abs() < 1e-9);
        assert_eq!(samples[1].0, SIG_POSITION);
        assert!((samples[1].1 - 123.4567 / TAU).abs() < 1e-9);
        assert!(out.samples.iter().all(|s| s.t_s == 0.1));
        settle(&mut codec, "vel", "foc curr", "1", 0.1);
        // MX → unknown cmd err: logged (and, being mode 2, a loss of sync). A second later, so
        // that the log budget of the first second does not hide the lines.
        let out = feed_str(&mut codec, "unknown cmd err\r\n", 1.11);
        let logged = |part: &str| out.events.iter().any(|e| matches!(e, Event::Log(t) if t.contains(part)));
        assert!(logged("drive: unknown cmd err") && logged("may have reset"), "{:?}", out.events);
        settle(&mut codec, "vel", "foc curr", "1", 1.115);
        let out = feed_str(&mut codec, "MXerr\r\n", 1.12);
        assert!(matches!(&out.events[..], [Event::Log(text)] if text.contains("MXerr")), "{:?}", out.events);
        // M:motor (the listing in mode 2) and ?M:motor (mode 3) are only logged.
        let out = feed_str(&mut codec, "?M:motor\r\n", 1.13);
        assert!(matches!(&out.events[..], [Event::Log(text)] if text.contains("M:motor")));
    }

    /// Host-side vectors as (state before, bytes in) → outcome; fed whole, byte by byte and
    /// split at every point they must give the same events, samples and bytes out.
    #[test]
    fn split_anywhere_gives_the_same_result() {
        let input: &[u8] =
            b"MVP1.200\r\nMC\tangle\r\nMMS1101011\r\n1.0\t2.0\t500.0\t10.0\t3.0\r\nMCangle\r\n\
                     PID vel| P: 1.200\r\nWarn: \\r detected! \nStatus: 1\r\nMMG1;2;3;4;5;6;7\r\nMLXerr\r\n\
                     nan\tinf\tovf\t1e999\t-0.000\r\n\xff\xfe garbage\r\nM12.500000\r\n";
        let run = |splits: &[usize]| {
            let mut codec = ready_codec("vel", "foc curr");
            let mut out = CodecOut::new();
            let bytes = input;
            let mut last = 0;
            for &s in splits.iter().chain(std::iter::once(&bytes.len())) {
                codec.feed(&bytes[last..s], 0.5, &mut out);
                last = s;
            }
            (tx(&out), out.samples, out.events)
        };
        let whole = run(&[]);
        assert!(!whole.1.is_empty() && !whole.2.is_empty());
        let n = input.len();
        assert_eq!(run(&(1..n).collect::<Vec<_>>()), whole);
        for split in 1..n {
            assert_eq!(run(&[split]), whole, "split at {split}");
        }
    }

    #[test]
    fn non_numbers_never_become_samples() {
        let mut codec = ready_codec("vel", "foc curr");
        let out = feed_str(&mut codec, "nan\tinf\tovf\t1e999\t-inf\r\n", 0.1);
        assert!(out.samples.is_empty());
        let out = feed_str(&mut codec, "1.0\tnan\t1500.0\t10.0\t6.2832\r\n", 0.2);
        let signals: Vec<u16> = out.samples.iter().map(|s| s.signal).collect();
        assert_eq!(signals, vec![SIG_SPEED, SIG_CURRENT, SIG_POSITION, SIG_SPEED_SP]);
        assert!((out.samples[1].value - 1.5).abs() < 1e-12, "Iq arrives in mA");
        assert!(out.samples.iter().all(|s| s.value.is_finite()));
    }

    #[test]
    fn first_partial_line_is_dropped() {
        let mut codec = SimpleFocCodec::new('M');
        let mut out = CodecOut::new();
        codec.start(0.0, &mut out);
        let out = feed_str(&mut codec, "567\t0.0000\t1.0000\t2.0000\r\n@machine\r\n", 0.01);
        assert!(
            out.samples.is_empty()
                && out.events.iter().all(|e| matches!(e, Event::Log(t) if t.contains("machine")))
        );
        assert!(codec.verbose3);
    }

    #[test]
    fn setpoints_need_the_active_mode() {
        let mut codec = ready_codec("vel", "foc curr");
        let (r, out) = command(&mut codec, Command::SetSetpoint(ControlMode::Speed, 600.0));
        assert_eq!(r, Ok(()));
        assert_eq!(tx(&out), "M62.831853\n");
        assert_eq!(out.events, vec![Event::Mode { mode: ControlMode::Speed, setpoint: 600.0 }]);
        let (r, _) = command(&mut codec, Command::SetSetpoint(ControlMode::Position, 1.0));
        assert_eq!(r, Err(CodecError::WrongMode { wanted: "Position".into(), active: "Speed".into() }));
        let mut codec = ready_codec("angle", "foc curr");
        let (_, out) = command(&mut codec, Command::SetSetpoint(ControlMode::Position, -2.0));
        assert_eq!(tx(&out), "M-12.566371\n");
    }

    #[test]
    fn voltage_torque_mode_refuses_current() {
        let mut codec = ready_codec("torque", "volt");
        let (r, _) = command(&mut codec, Command::SetSetpoint(ControlMode::Current, 1.0));
        assert!(
            matches!(r, Err(CodecError::Invalid(ref t)) if t.contains("voltage torque control")),
            "{r:?}"
        );
        let mut codec = ready_codec("vel", "volt");
        let (r, out) = command(&mut codec, Command::SetMode(ControlMode::Current));
        assert!(matches!(r, Err(CodecError::Invalid(ref t)) if t.contains("voltage")), "{r:?}");
        assert!(out.tx.is_empty());
        let (r, _) = command(&mut codec, Command::WriteParam("velocity_output_limit_a".into(), 1.0));
        assert!(r.is_err());
        let mut codec = ready_codec("vel", "dc curr");
        let (r, out) = command(&mut codec, Command::SetMode(ControlMode::Current));
        assert_eq!((r, tx(&out).as_str()), (Ok(()), "MC0\nM0\n"));
    }

    #[test]
    fn position_mode_starts_at_the_present_angle() {
        let mut codec = ready_codec("vel", "foc curr");
        let (r, _) = command(&mut codec, Command::SetMode(ControlMode::Position));
        assert!(matches!(r, Err(CodecError::Invalid(_))), "no angle known yet");
        feed_str(&mut codec, "0.0\t0.0\t0.0\t0.0\t3.5\r\n", 0.015);
        let (r, out) = command(&mut codec, Command::SetMode(ControlMode::Position));
        assert_eq!((r, tx(&out).as_str()), (Ok(()), "MC2\nM3.5\n"));
    }

    #[test]
    fn estop_and_stop() {
        let mut codec = ready_codec("vel", "foc curr");
        let mut out = CodecOut::new();
        codec.estop(1.0, &mut out);
        assert_eq!(tx(&out), "ME0\nM0\n");
        let mut codec = ready_codec("angle", "foc curr");
        let mut out = CodecOut::new();
        codec.estop(1.0, &mut out);
        assert_eq!(tx(&out), "ME0\n");
        let mut out = CodecOut::new();
        codec.stop(1.0, &mut out);
        assert_eq!(tx(&out), "ME0\n");
    }

    #[test]
    fn write_errors_and_timeouts_are_refused() {
        let mut codec = ready_codec("vel", "foc curr");
        command(&mut codec, Command::WriteParam("current_limit_a".into(), 3.0)).0.unwrap();
        let out = feed_str(&mut codec, "MLCerr\r\n", 0.05);
        assert!(
            matches!(&out.events[..], [Event::Refused(t)] if t.contains("current_limit_a") && t.contains("err"))
        );
        let (_, out) = command(&mut codec, Command::WriteParam("angle_kp".into(), 12.5));
        assert_eq!(tx(&out), "MAP12.5\n");
        let mut out = CodecOut::new();
        codec.poll(0.3, &mut out);
        assert!(!out.events.iter().any(|e| matches!(e, Event::Refused(_))));
        let mut out = CodecOut::new();
        codec.poll(0.6, &mut out);
        assert!(
            out.events.iter().any(|e| matches!(e, Event::Refused(t) if t.contains("angle_kp"))),
            "{:?}",
            out.events
        );
        assert_eq!(
            command(&mut codec, Command::ReadParam("nope".into())).0,
            Err(CodecError::UnknownParam("nope".into()))
        );
        // A current limit write reads the velocity PID limit the library derived from it.
        let (_, out) = command(&mut codec, Command::WriteParam("current_limit_a".into(), 2.0));
        assert_eq!(tx(&out), "MLC2\n");
        let out = feed_str(&mut codec, "MLC2.000000\r\n", 0.7);
        assert_eq!(out.events, vec![Event::ParamWritten { key: "current_limit_a".into(), value: 2.0 }]);
        assert_eq!(tx(&out), "MVL\n");
    }

    #[test]
    fn commands_fit_the_commander_buffer() {
        let codec = ready_codec("vel", "foc curr");
        for spec in codec.params() {
            for value in [spec.min, spec.max, (spec.min + spec.max) / 3.0, -spec.max] {
                let mut codec = ready_codec("vel", "foc curr");
                let (r, out) = command(&mut codec, Command::WriteParam(spec.key.clone(), value));
                assert_eq!(r, Ok(()), "{}", spec.key);
                let text = tx(&out);
                assert!(text.len() <= 19 && text.ends_with('\n') && !text.contains('e'), "{text:?}");
            }
            if spec.key.contains("limit") {
                assert!(spec.unit == "A" || spec.unit == "rpm" || spec.unit == "V", "{}", spec.key);
            }
        }
        let keys: Vec<String> = codec.params().into_iter().map(|p| p.key).collect();
        for key in
            ["current_limit_a", "velocity_limit_rpm", "velocity_output_limit_a", "angle_output_limit_rpm"]
        {
            assert!(keys.iter().any(|k| k == key), "{key}");
        }
    }

    #[test]
    fn console_lines_are_classified() {
        let codec = ready_codec("vel", "foc curr");
        assert_eq!(codec.raw_intent("M10"), RawIntent::Setpoint(ControlMode::Speed, 10.0 * RPM_PER_RAD_S));
        assert!(matches!(codec.raw_intent("M10 2.5"), RawIntent::Guarded(_)));
        assert_eq!(codec.raw_intent("MLC3"), RawIntent::Param("current_limit_a".into(), 3.0));
        assert!(
            matches!(codec.raw_intent("MLV20"), RawIntent::Param(k, v) if k == "velocity_limit_rpm" && (v - 20.0 * RPM_PER_RAD_S).abs() < 1e-9)
        );
        assert_eq!(codec.raw_intent("MVL1e1"), RawIntent::Param("velocity_output_limit_a".into(), 10.0));
        assert!(matches!(codec.raw_intent("MLCinf"), RawIntent::Guarded(_)));
        assert_eq!(codec.raw_intent("MVP"), RawIntent::Other);
        assert_eq!(codec.raw_intent("ME1"), RawIntent::Other);
        assert_eq!(codec.raw_intent("@2"), RawIntent::Other);
        assert!(matches!(codec.raw_intent("MVP0.12345678901234567"), RawIntent::Guarded(_)));
        let mut codec = codec;
        let mut out = CodecOut::new();
        codec.raw("MVP0.12345678901234567", 0.1, &mut out);
        assert!(out.tx.is_empty() && matches!(&out.events[..], [Event::Refused(_)]));
        let mut out = CodecOut::new();
        codec.raw("MVP\r\n", 0.1, &mut out);
        assert_eq!(tx(&out), "MVP\n");
        let torque = ready_codec("torque", "volt");
        assert!(matches!(torque.raw_intent("M1"), RawIntent::Guarded(_)));
    }

    #[test]
    fn polls_monitor_reads_without_a_stream() {
        let mut codec = ready_codec("vel", "foc curr");
        let mut out = CodecOut::new();
        codec.poll(0.5, &mut out);
        assert_eq!(tx(&out), "ME\n");
        feed_str(&mut codec, "ME0\r\n", 0.51);
        let mut out = CodecOut::new();
        codec.poll(1.1, &mut out);
        assert!(tx(&out).contains("MMG7\n"), "{}", tx(&out));
        let out = feed_str(
            &mut codec,
            "MMG10.000000;1.000000;0.000000;0.250000;0.000000;10.000000;3.141593\r\n",
            1.12,
        );
        let find = |signal| out.samples.iter().find(|s| s.signal == signal).map(|s| s.value);
        assert!((find(SIG_SPEED).unwrap() - 10.0 * RPM_PER_RAD_S).abs() < 1e-9);
        assert_eq!(find(SIG_CURRENT), Some(0.25), "MMG reads amperes");
        assert!((find(SIG_POSITION).unwrap() - 0.5).abs() < 1e-6);
        assert!((find(SIG_SPEED_SP).unwrap() - 10.0 * RPM_PER_RAD_S).abs() < 1e-9);
        // A stream line stops the polling.
        let out = feed_str(&mut codec, "1.0\t0.0\t0.0\t0.0\t0.0\r\n", 1.2);
        assert!(!codec.polling && out.events.iter().any(|e| matches!(e, Event::Log(_))));
    }

    #[test]
    fn unexpected_disable_is_reported_once() {
        let mut codec = ready_codec("vel", "foc curr");
        command(&mut codec, Command::Enable).0.unwrap();
        feed_str(&mut codec, "ME1\r\n", 0.05);
        let out = feed_str(&mut codec, "ME0\r\n", 0.6);
        assert!(
            matches!(&out.events[..], [Event::State(DriveState::Fault(t))] if t.contains("disabled itself"))
        );
        let out = feed_str(&mut codec, "ME0\r\n", 1.1);
        assert!(out.events.is_empty());
        let (_, out) = command(&mut codec, Command::ResetFaults);
        assert_eq!(out.events, vec![Event::State(DriveState::Idle)]);
        assert_eq!(tx(&out), "ME\n");
        assert!(feed_str(&mut codec, "ME0\r\n", 1.15).events.is_empty());
        // A commanded disable is not a fault.
        command(&mut codec, Command::Enable).0.unwrap();
        feed_str(&mut codec, "ME1\r\n", 1.2);
        command(&mut codec, Command::Disable).0.unwrap();
        let out = feed_str(&mut codec, "ME0\r\n", 1.3);
        assert_eq!(out.events, vec![Event::State(DriveState::Idle)]);
    }

    /// A speed-mode codec with the motor enabled and the three-request window filled with
    /// reads the drive has not answered yet.
    fn busy_enabled_codec() -> SimpleFocCodec {
        let mut codec = ready_codec("vel", "foc curr");
        command(&mut codec, Command::Enable).0.unwrap();
        feed_str(&mut codec, "ME1\r\n", 0.015);
        for key in ["velocity_kp", "velocity_ki", "velocity_kd"] {
            command(&mut codec, Command::ReadParam(key.into())).0.unwrap();
        }
        assert_eq!(codec.in_flight.len(), MAX_IN_FLIGHT);
        codec
    }

    /// Target writes (`M<number>`) in some bytes sent to the drive.
    fn target_writes(text: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.len() > 1 && l.starts_with('M') && !l.as_bytes()[1].is_ascii_uppercase())
            .map(String::from)
            .collect()
    }

    #[test]
    fn only_the_newest_setpoint_waits() {
        let mut codec = busy_enabled_codec();
        for rpm in [100.0, 300.0, 600.0] {
            let (r, out) = command(&mut codec, Command::SetSetpoint(ControlMode::Speed, rpm));
            assert_eq!(r, Ok(()));
            assert!(out.tx.is_empty(), "the window is full");
        }
        assert_eq!(codec.queue.iter().filter(|r| r.kind == Kind::TargetWrite).count(), 1);
        let out = feed_str(&mut codec, "MVP1.000000\r\nMVI1.000000\r\nMVD0.000000\r\n", 0.05);
        assert_eq!(target_writes(&tx(&out)), vec!["M62.831853"], "{}", tx(&out));
    }

    #[test]
    fn estop_drops_queued_setpoints_writes_and_console_lines() {
        let mut codec = busy_enabled_codec();
        for rpm in [100.0, 300.0, 600.0] {
            command(&mut codec, Command::SetSetpoint(ControlMode::Speed, rpm)).0.unwrap();
        }
        command(&mut codec, Command::WriteParam("velocity_kp".into(), 0.3)).0.unwrap();
        command(&mut codec, Command::Raw("MLC5".into())).0.unwrap();
        command(&mut codec, Command::Enable).0.unwrap();
        let mut out = CodecOut::new();
        codec.estop(0.04, &mut out);
        assert_eq!(tx(&out), "ME0\nM0\n");
        let refused: Vec<&String> = out
            .events
            .iter()
            .filter_map(|e| if let Event::Refused(t) = e { Some(t) } else { None })
            .collect();
        assert!(refused.iter().any(|t| t.contains("velocity_kp")), "{refused:?}");
        assert!(refused.iter().any(|t| t.contains("MLC5")), "{refused:?}");
        assert!(out.events.contains(&Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }));
        // The late replies free the window: nothing queued before the stop follows it.
        let mut sent = String::new();
        let out =
            feed_str(&mut codec, "MVP1.000000\r\nMVI1.000000\r\nMVD0.000000\r\nME0\r\nM0.000000\r\n", 0.05);
        sent.push_str(&tx(&out));
        let mut out = CodecOut::new();
        codec.poll(0.6, &mut out);
        sent.push_str(&tx(&out));
        assert!(target_writes(&sent).is_empty(), "{sent}");
        assert!(!sent.contains("MVP0.3") && !sent.contains("MLC5") && !sent.contains("ME1"), "{sent}");
        assert_eq!(codec.target, Some(0.0));

        // A disable drops them too; the drive's own target is read back.
        let mut codec = busy_enabled_codec();
        command(&mut codec, Command::SetSetpoint(ControlMode::Speed, 600.0)).0.unwrap();
        command(&mut codec, Command::WriteParam("velocity_ki".into(), 2.0)).0.unwrap();
        let (_, out) = command(&mut codec, Command::Disable);
        assert_eq!(tx(&out), "ME0\n");
        assert!(out.events.iter().any(|e| matches!(e, Event::Refused(t) if t.contains("velocity_ki"))));
        let out = feed_str(&mut codec, "MVP1.000000\r\nMVI1.000000\r\nMVD0.000000\r\nME0\r\n", 0.05);
        assert_eq!(tx(&out), "M\n", "only the target read follows");
        let out = feed_str(&mut codec, "M0.000000\r\n", 0.06);
        assert_eq!(out.events, vec![Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }]);
    }

    #[test]
    fn board_reset_forgets_the_mode_until_read_again() {
        for reset in ["MOT: Ready.\r\nStatus: 1\r\n", "Verb:on!\r\n", "Status: 1\r\n", "on!\r\n"] {
            let mut codec = ready_codec("angle", "foc curr");
            let out = feed_str(&mut codec, reset, 0.6);
            assert!(
                out.events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("may have reset"))),
                "{reset:?}: {:?}",
                out.events
            );
            assert_eq!(tx(&out), "@3\n#6\nMMS1101011\n", "{reset:?}");
            assert_eq!((codec.motion, codec.torque, codec.target), (None, None, None), "{reset:?}");
            // No setpoint in a unit that is not known.
            let (r, out) = command(&mut codec, Command::SetSetpoint(ControlMode::Position, 10.0));
            assert_eq!(
                r,
                Err(CodecError::WrongMode { wanted: "Position".into(), active: "a not yet known".into() }),
                "{reset:?}"
            );
            assert!(out.tx.is_empty());
            assert!(matches!(codec.raw_intent("M62"), RawIntent::Guarded(_)));
            // The board came back in velocity mode.
            let out = settle(&mut codec, "vel", "foc curr", "1", 0.7);
            assert_eq!(tx(&out), "MT\nMC\nM\nME\n", "{reset:?}");
            assert!(
                out.events.contains(&Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }),
                "{reset:?}"
            );
            assert!(codec.verbose3);
            let (r, _) = command(&mut codec, Command::SetSetpoint(ControlMode::Position, 10.0));
            assert!(matches!(r, Err(CodecError::WrongMode { .. })));
            let (r, out) = command(&mut codec, Command::SetSetpoint(ControlMode::Speed, 600.0));
            assert_eq!((r, tx(&out).as_str()), (Ok(()), "M62.831853\n"));
        }
        // Three requests in a row without a reply: verbose mode may be lost as well.
        let mut codec = ready_codec("angle", "foc curr");
        for key in ["velocity_kp", "velocity_ki", "velocity_kd"] {
            command(&mut codec, Command::ReadParam(key.into())).0.unwrap();
        }
        let mut out = CodecOut::new();
        codec.poll(0.6, &mut out);
        assert_eq!(codec.motion, None);
        assert!(tx(&out).starts_with("@3\n#6\nMMS1101011\n"), "{}", tx(&out));
    }

    #[test]
    fn lost_start_up_reads_are_asked_again() {
        // A board that resets when the port opens: the set-up lines get through late and the
        // reads behind them are lost; from 1.5 s on it answers everything.
        let mut codec = SimpleFocCodec::new('M');
        let mut out = CodecOut::new();
        codec.start(0.0, &mut out);
        for step in 1..=300 {
            let t = f64::from(step) * 0.01;
            let mut out = CodecOut::new();
            codec.poll(t, &mut out);
            if t > 1.5 {
                settle(&mut codec, "vel", "foc curr", "0", t);
            } else if codec.in_flight.iter().any(|f| f.line == "@3") {
                codec.in_flight.clear();
                feed_str(&mut codec, "@machine\r\n#6\r\nMMS1101011\r\n", t);
                // The reads now sent are lost.
                codec.in_flight.retain(|f| f.line.len() > 2);
            }
        }
        assert_eq!((codec.motion, codec.torque, codec.enabled), (Some(1), Some(2), Some(false)));
        assert_eq!(codec.target, Some(0.0));
        let (r, _) = command(&mut codec, Command::SetSetpoint(ControlMode::Speed, 100.0));
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn mode_change_of_a_running_motor_is_wrapped_in_e0_e1() {
        let running = || {
            let mut codec = ready_codec("vel", "foc curr");
            command(&mut codec, Command::Enable).0.unwrap();
            feed_str(&mut codec, "ME1\r\n", 0.012);
            feed_str(&mut codec, "0.0\t0.0\t0.0\t0.0\t3.5\r\n", 0.015);
            codec
        };
        let mut codec = running();
        let (r, out) = command(&mut codec, Command::SetMode(ControlMode::Position));
        assert_eq!((r, tx(&out).as_str()), (Ok(()), "ME0\nMC2\nM3.5\nME1\n"));
        // Until the drive confirms, no setpoint in either unit.
        for mode in [ControlMode::Speed, ControlMode::Position] {
            let (r, _) = command(&mut codec, Command::SetSetpoint(mode, 1.0));
            assert!(matches!(r, Err(CodecError::WrongMode { .. })), "{r:?}");
        }
        let out = feed_str(&mut codec, "ME0\r\nMCangle\r\nM3.500000\r\nME1\r\n", 0.03);
        assert_eq!(out.events, vec![Event::Mode { mode: ControlMode::Position, setpoint: 3.5 / TAU }]);
        // From angle to torque, likewise.
        let (r, out) = command(&mut codec, Command::SetMode(ControlMode::Current));
        assert_eq!((r, tx(&out).as_str()), (Ok(()), "ME0\nMC0\nM0\nME1\n"));
        // A stop in progress: off, changed, and left off.
        let mut codec = running();
        let mut out = CodecOut::new();
        codec.estop(0.02, &mut out);
        let (r, out) = command(&mut codec, Command::SetMode(ControlMode::Position));
        assert_eq!((r, tx(&out).as_str()), (Ok(()), "ME0\nMC2\nM3.5\n"));
        // An enable on its way counts as running.
        let mut codec = ready_codec("vel", "foc curr");
        command(&mut codec, Command::Enable).0.unwrap();
        feed_str(&mut codec, "0.0\t0.0\t0.0\t0.0\t3.5\r\n", 0.015);
        let (_, out) = command(&mut codec, Command::SetMode(ControlMode::Position));
        assert_eq!(tx(&out), "ME0\nMC2\nM3.5\nME1\n");
        // Enable flag not known yet (just connected): the change is made with the motor off.
        let mut codec = running();
        codec.enabled = None;
        let (r, out) = command(&mut codec, Command::SetMode(ControlMode::Position));
        assert_eq!(r, Ok(()));
        assert!(tx(&out).starts_with("ME0\nMC2\nM3.5\n"), "{}", tx(&out));
    }

    #[test]
    fn lost_stop_is_sent_again_until_confirmed() {
        let mut codec = ready_codec("vel", "foc curr");
        command(&mut codec, Command::Enable).0.unwrap();
        feed_str(&mut codec, "ME1\r\n", 0.012);
        let mut out = CodecOut::new();
        codec.estop(0.1, &mut out);
        assert_eq!(tx(&out), "ME0\nM0\n");
        // Lost: sent again, with a refusal saying so.
        let mut out = CodecOut::new();
        codec.poll(0.65, &mut out);
        assert!(tx(&out).starts_with("ME0\nM0\n"), "{}", tx(&out));
        assert!(
            out.events.iter().any(|e| matches!(e, Event::Refused(t) if t.contains("not confirmed"))),
            "{:?}",
            out.events
        );
        // The drive still reads enabled: again.
        let out = feed_str(&mut codec, "ME1\r\n", 0.7);
        assert!(out.events.iter().any(|e| matches!(e, Event::Refused(t) if t.contains("not confirmed"))));
        let out = feed_str(&mut codec, "M0.000000\r\n", 0.7);
        assert!(out.tx.is_empty());
        let mut out = CodecOut::new();
        codec.poll(1.3, &mut out);
        assert!(tx(&out).contains("ME0\n"), "{}", tx(&out));
        // Confirmed: no more.
        settle(&mut codec, "vel", "foc curr", "0", 1.35);
        assert!(!codec.stop_unconfirmed);
        let mut out = CodecOut::new();
        codec.poll(2.0, &mut out);
        assert!(!tx(&out).contains("ME0"), "{}", tx(&out));
        // A disable is retried the same way.
        let mut codec = ready_codec("vel", "foc curr");
        command(&mut codec, Command::Disable).0.unwrap();
        let mut out = CodecOut::new();
        codec.poll(0.6, &mut out);
        assert!(tx(&out).starts_with("ME0\n") && !tx(&out).contains("M0\n"), "{}", tx(&out));
        assert!(out.events.iter().any(|e| matches!(e, Event::Refused(t) if t.contains("not confirmed"))));
        // Enabling again ends the retries.
        command(&mut codec, Command::Enable).0.unwrap();
        let mut out = CodecOut::new();
        codec.poll(1.2, &mut out);
        assert!(!tx(&out).contains("ME0"), "{}", tx(&out));
    }

    #[test]
    fn console_guards_mode_foc_sensor_and_hex_lines() {
        let codec = ready_codec("vel", "foc curr");
        let guarded = |line: &str| matches!(codec.raw_intent(line), RawIntent::Guarded(_));
        for line in [
            "MC2",
            "MC0",
            "MC 1",
            "MCx",
            "MCX5",
            "MT0",
            "MT1",
            "MTx",
            "MFR",
            "MFP24",
            "MFC100",
            "MSM1.5",
            "MSE0",
            "MSE-1",
            "M0x10",
            "M-0X1p4",
            "M1 0x5",
            "MLC0x10",
            "MVP 0x1p-2",
            "MLV+0x20",
        ] {
            assert!(guarded(line), "{line}: {:?}", codec.raw_intent(line));
        }
        for line in [
            "MC",
            "MCD5",
            "MCT",
            "MT",
            "MTT",
            "MSM",
            "MSE",
            "MF",
            "ME1",
            "MR0x10",
            "X0x10",
            "XC2",
            "MMS1101011",
        ] {
            assert_eq!(codec.raw_intent(line), RawIntent::Other, "{line}");
        }
        assert_eq!(codec.raw_intent("MLC0.5"), RawIntent::Param("current_limit_a".into(), 0.5));
        assert_eq!(codec.raw_intent("M0"), RawIntent::Setpoint(ControlMode::Speed, 0.0));
        // Control characters (several commands in one line) are guarded by the codec itself.
        for line in ["M1\nM600", "MLC1\rMLC50", "M1\tM6", "M1\u{7f}", "M1\u{0}MLC9"] {
            assert!(guarded(line), "{line:?}");
        }
    }

    #[test]
    fn angle_limit_is_not_a_speed_in_angle_nocascade() {
        let mut codec = ready_codec("angle nocascade", "foc curr");
        let (r, out) = command(&mut codec, Command::WriteParam("angle_output_limit_rpm".into(), 100.0));
        assert!(matches!(r, Err(CodecError::Invalid(ref t)) if t.contains("angle_nocascade")), "{r:?}");
        assert!(out.tx.is_empty());
        assert!(matches!(codec.raw_intent("MAL5"), RawIntent::Guarded(_)));
        command(&mut codec, Command::ReadParam("angle_output_limit_rpm".into())).0.unwrap();
        let out = feed_str(&mut codec, "MAL2.000000\r\n", 0.05);
        assert!(!out.events.iter().any(|e| matches!(e, Event::ParamValue { .. })), "{:?}", out.events);
        assert!(
            out.events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("angle_output_limit_rpm")))
        );
        // In angle mode it is a speed.
        let mut codec = ready_codec("angle", "foc curr");
        let (r, out) =
            command(&mut codec, Command::WriteParam("angle_output_limit_rpm".into(), 60.0 * RPM_PER_RAD_S));
        assert_eq!((r, tx(&out).as_str()), (Ok(()), "MAL60\n"));
        assert!(matches!(codec.raw_intent("MAL5"), RawIntent::Param(k, _) if k == "angle_output_limit_rpm"));
        // VL in voltage torque mode is a voltage: guarded on the console as well.
        let codec = ready_codec("vel", "volt");
        assert!(matches!(codec.raw_intent("MVL5"), RawIntent::Guarded(_)));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..30)) {
            let mut codec = SimpleFocCodec::new('M');
            let mut out = CodecOut::new();
            codec.start(0.0, &mut out);
            let mut t = 0.0;
            for chunk in chunks {
                codec.feed(&chunk, t, &mut out);
                codec.poll(t, &mut out);
                t += 0.05;
            }
            prop_assert!(out.samples.iter().all(|s| s.value.is_finite()));
            prop_assert!(codec.queue.len() <= MAX_QUEUED);
        }

        #[test]
        fn reply_like_garbage_never_panics(lines in proptest::collection::vec("[MQDVLCETGS@#?:|0-9 .\\-;\tenaiofv]{0,30}\r\n", 0..30)) {
            let mut codec = ready_codec("vel", "foc curr");
            let mut out = CodecOut::new();
            for line in lines {
                codec.feed(line.as_bytes(), 0.1, &mut out);
            }
            prop_assert!(out.samples.iter().all(|s| s.value.is_finite()));
        }
    }

    /// Codec and emulated device joined in memory, with the simulator between them.
    struct Bench {
        codec: SimpleFocCodec,
        device: SimpleFocDevice,
        drive: SimDrive,
        t_s: f64,
        samples: Vec<Sample>,
        events: Vec<Event>,
    }

    impl Bench {
        fn new(rate_hz: f64) -> Self {
            let mut bench = Bench {
                codec: SimpleFocCodec::new('M'),
                device: SimpleFocDevice::new('M', rate_hz),
                drive: SimDrive::new(&SimConfig::default()),
                t_s: 0.0,
                samples: Vec::new(),
                events: Vec::new(),
            };
            // The sketch has been streaming for a while when the port opens.
            let mut frames = Vec::new();
            let mut junk = Vec::new();
            for _ in 0..50 {
                bench.t_s += 0.001;
                frames.clear();
                bench.drive.advance(0.001, &mut frames);
                bench.device.tick(bench.t_s, &mut bench.drive, &frames[frames.len() - 1], &mut junk);
            }
            let mut out = CodecOut::new();
            bench.codec.start(bench.t_s, &mut out);
            // The port opened in the middle of a stream line.
            bench.codec.feed(b"34\t0.0000\t0.0000\t0.0000\r\n", bench.t_s, &mut out);
            bench.deliver(out);
            bench
        }

        fn deliver(&mut self, out: CodecOut) {
            let mut reply = Vec::new();
            self.device.receive(&out.tx, self.t_s, &mut self.drive, &mut reply);
            self.samples.extend(out.samples);
            self.events.extend(out.events);
            if !reply.is_empty() {
                let mut out = CodecOut::new();
                self.codec.feed(&reply, self.t_s, &mut out);
                self.deliver(out);
            }
        }

        fn command(&mut self, cmd: Command) -> Result<(), CodecError> {
            let mut out = CodecOut::new();
            let result = self.codec.command(&cmd, self.t_s, &mut out);
            self.deliver(out);
            result
        }

        fn run(&mut self, dt_s: f64) {
            let mut frames = Vec::new();
            for _ in 0..(dt_s * 1000.0).round() as usize {
                self.t_s += 0.001;
                frames.clear();
                self.drive.advance(0.001, &mut frames);
                let mut bytes = Vec::new();
                if let Some(frame) = frames.last() {
                    self.device.tick(self.t_s, &mut self.drive, frame, &mut bytes);
                }
                let mut out = CodecOut::new();
                self.codec.feed(&bytes, self.t_s, &mut out);
                if ((self.t_s * 1000.0).round() as u64).is_multiple_of(10) {
                    self.codec.poll(self.t_s, &mut out);
                }
                self.deliver(out);
            }
        }

        fn mean(&self, signal: u16, window_s: f64) -> f64 {
            let values: Vec<f64> = self
                .samples
                .iter()
                .filter(|s| s.signal == signal && s.t_s > self.t_s - window_s)
                .map(|s| s.value)
                .collect();
            assert!(!values.is_empty(), "no samples of signal {signal}");
            values.iter().sum::<f64>() / values.len() as f64
        }

        fn take_events(&mut self) -> Vec<Event> {
            std::mem::take(&mut self.events)
        }
    }

    #[test]
    fn codec_and_device_loop() {
        let mut bench = Bench::new(100.0);
        bench.run(0.3);
        let events = bench.take_events();
        assert!(events.contains(&Event::State(DriveState::Idle)), "{events:?}");
        assert!(events.contains(&Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }), "{events:?}");
        assert!(bench.codec.verbose3 && bench.codec.bitmap == Some(0b1101011));

        bench.command(Command::Enable).unwrap();
        bench.run(0.1);
        assert!(bench.take_events().contains(&Event::State(DriveState::Enabled)));

        bench.command(Command::SetSetpoint(ControlMode::Speed, 600.0)).unwrap();
        bench.run(1.0);
        let speed = bench.mean(SIG_SPEED, 0.3);
        assert!((speed - 600.0).abs() < 0.03 * 600.0, "speed {speed}");
        assert!((bench.mean(SIG_SPEED_SP, 0.3) - 600.0).abs() < 0.01, "setpoint signal");
        let stream_samples =
            bench.samples.iter().filter(|s| s.signal == SIG_SPEED && s.t_s > bench.t_s - 1.0).count();
        assert!((95..=105).contains(&stream_samples), "{stream_samples} speed samples in 1 s");

        bench.command(Command::WriteParam("velocity_kp".into(), 0.45)).unwrap();
        bench.run(0.05);
        let events = bench.take_events();
        assert!(events.iter().any(|e| matches!(e, Event::ParamWritten { key, value } if key == "velocity_kp" && (value - 0.45).abs() < 1e-6)), "{events:?}");
        bench.command(Command::ReadParam("velocity_kp".into())).unwrap();
        bench.run(0.05);
        let events = bench.take_events();
        assert!(events.iter().any(|e| matches!(e, Event::ParamValue { key, value } if key == "velocity_kp" && (value - 0.45).abs() < 1e-6)), "{events:?}");
        assert!(
            (bench.drive.config().drive.speed_kp - 0.45 * RAD_S_PER_RPM).abs() < 1e-6,
            "gain reached the simulator"
        );

        bench.command(Command::ReadAllParams).unwrap();
        bench.run(0.3);
        let events = bench.take_events();
        for spec in bench.codec.params() {
            assert!(
                events.iter().any(|e| matches!(e, Event::ParamValue { key, .. } if *key == spec.key)),
                "{}",
                spec.key
            );
        }

        bench.command(Command::SetMode(ControlMode::Position)).unwrap();
        bench.run(0.1);
        assert!(
            bench.take_events().iter().any(|e| matches!(e, Event::Mode { mode: ControlMode::Position, .. }))
        );
        let start = bench.mean(SIG_POSITION, 0.02);
        bench.command(Command::SetSetpoint(ControlMode::Position, start + 2.0)).unwrap();
        bench.run(1.0);
        assert!((bench.mean(SIG_POSITION, 0.1) - (start + 2.0)).abs() < 0.02);

        let mut out = CodecOut::new();
        bench.codec.estop(bench.t_s, &mut out);
        bench.deliver(out);
        bench.run(0.05);
        assert!(!bench.drive.is_enabled());
        assert!(bench.take_events().contains(&Event::State(DriveState::Idle)));

        // A trip in the simulator: the motor reads disabled although drivebench enabled it.
        bench.command(Command::SetMode(ControlMode::Current)).unwrap();
        bench.command(Command::Enable).unwrap();
        bench.run(0.1);
        assert!(bench.take_events().contains(&Event::State(DriveState::Enabled)));
        bench.drive.write_param("overcurrent_trip_a", 1.0).unwrap();
        bench.command(Command::SetSetpoint(ControlMode::Current, 3.0)).unwrap();
        bench.run(0.7);
        assert!(bench.drive.fault().is_some());
        let events = bench.take_events();
        assert!(
            events.iter().any(|e| matches!(e, Event::State(DriveState::Fault(t)) if !t.is_empty())),
            "{events:?}"
        );
        bench.command(Command::ResetFaults).unwrap();
        bench.run(0.05);
        assert!(bench.take_events().contains(&Event::State(DriveState::Idle)));
    }

    #[test]
    fn loop_without_a_stream_polls() {
        let mut bench = Bench::new(0.0);
        bench.command(Command::Enable).unwrap();
        bench.command(Command::SetSetpoint(ControlMode::Speed, 600.0)).unwrap();
        bench.run(1.5);
        assert!(bench.codec.polling);
        assert!(bench.take_events().iter().any(|e| matches!(e, Event::Log(t) if t.contains("MMG7"))));
        bench.run(1.0);
        let speed = bench.mean(SIG_SPEED, 0.3);
        assert!((speed - 600.0).abs() < 0.03 * 600.0, "speed {speed}");
        let n = bench.samples.iter().filter(|s| s.signal == SIG_SPEED && s.t_s > bench.t_s - 1.0).count();
        assert!(n >= 50, "{n} polled samples in 1 s");
    }

    #[test]
    fn loop_mode_change_never_runs_the_old_target_in_the_new_unit() {
        let mut bench = Bench::new(100.0);
        bench.run(0.3);
        bench.command(Command::Enable).unwrap();
        bench.run(0.05);
        bench.command(Command::SetSetpoint(ControlMode::Speed, 600.0)).unwrap();
        bench.run(0.5);
        bench.take_events();
        // 62.83 rad/s read as an angle would be 10 rev, far from the shaft.
        let mut out = CodecOut::new();
        bench.codec.command(&Command::SetMode(ControlMode::Position), bench.t_s, &mut out).unwrap();
        let text = String::from_utf8(std::mem::take(&mut out.tx)).unwrap();
        bench.deliver(out);
        // The lines reach the board one per millisecond, the loops running in between.
        let mut frames = Vec::new();
        let mut checked = 0;
        for line in text.split_inclusive('\n') {
            let mut reply = Vec::new();
            bench.device.receive(line.as_bytes(), bench.t_s, &mut bench.drive, &mut reply);
            let mut out = CodecOut::new();
            bench.codec.feed(&reply, bench.t_s, &mut out);
            bench.deliver(out);
            bench.t_s += 0.001;
            frames.clear();
            bench.drive.advance(0.001, &mut frames);
            let Some(frame) = frames.last() else { continue };
            if bench.drive.is_enabled() && bench.drive.mode() == ControlMode::Position {
                checked += 1;
                assert!(
                    (bench.drive.setpoint() - frame.position_rev).abs() < 1.0,
                    "after `{}`: angle target {} rev, shaft at {} rev",
                    line.trim_end(),
                    bench.drive.setpoint(),
                    frame.position_rev
                );
            }
        }
        assert!(checked > 0 && bench.drive.is_enabled(), "enabled again after the change");
        bench.run(0.3);
        let events = bench.take_events();
        assert!(
            events.iter().any(|e| matches!(e, Event::Mode { mode: ControlMode::Position, .. })),
            "{events:?}"
        );
        assert!(!events.iter().any(|e| matches!(e, Event::State(_) | Event::Refused(_))), "{events:?}");
    }

    #[test]
    fn loop_board_reset_is_recovered() {
        let mut bench = Bench::new(100.0);
        bench.run(0.3);
        bench.command(Command::Enable).unwrap();
        bench.run(0.05);
        bench.command(Command::SetMode(ControlMode::Position)).unwrap();
        bench.run(0.1);
        assert_eq!(bench.codec.motion, Some(2));
        bench.take_events();
        // The board resets: the sketch starts again in velocity mode, disabled, in verbose mode 2
        // and with the default monitoring variables.
        bench.drive.disable();
        bench.drive.set_mode(ControlMode::Speed);
        bench.drive.set_setpoint(0.0);
        bench.device = SimpleFocDevice::new('M', 100.0);
        bench.run(1.0);
        let events = bench.take_events();
        assert!(
            events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("may have reset"))),
            "{events:?}"
        );
        assert!(events.contains(&Event::Mode { mode: ControlMode::Speed, setpoint: 0.0 }), "{events:?}");
        assert!(events.contains(&Event::State(DriveState::Idle)), "{events:?}");
        assert!(bench.codec.verbose3 && bench.codec.bitmap == Some(0b1101011));
        assert!(matches!(
            bench.command(Command::SetSetpoint(ControlMode::Position, 1.0)),
            Err(CodecError::WrongMode { .. })
        ));
        bench.command(Command::Enable).unwrap();
        bench.command(Command::SetSetpoint(ControlMode::Speed, 300.0)).unwrap();
        bench.run(1.0);
        let speed = bench.mean(SIG_SPEED, 0.3);
        assert!((speed - 300.0).abs() < 0.03 * 300.0, "speed {speed}");
    }
}
