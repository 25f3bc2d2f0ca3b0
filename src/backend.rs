//! Backends a worker can drive: the built-in simulated drive, and serial links with their
//! protocol codecs. `for_connection` picks one from a project entry.

use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::drive::{
    Command, ControlMode, Direction, DriveState, Event, LimitError, Limits, Sample, SignalSpec, Traffic,
};
use crate::link::{LinkInput, SerialLink};
use crate::project::{Connection, DriveConfig, SerialConnection};
use crate::protocol::{Codec, CodecOut, RawIntent};
use crate::sim::{SimConfig, SimDrive, TelemetryFrame};
use crate::worker::{Backend, Clock, Connected};

/// The backend for a project drive.
pub fn for_drive(config: &DriveConfig, clock: Clock) -> Box<dyn Backend> {
    match &config.connection {
        Connection::Simulated(cfg) => Box::new(SimBackend::new(cfg.clone(), clock)),
        Connection::Serial(serial) => {
            Box::new(SerialBackend::new(serial.clone(), config.limits.clone(), clock))
        }
    }
}

/// A drive that is asked for data (every protocol but the Serial Plotter) and sends nothing
/// for this long is taken as lost (a dead adapter can leave the port open but silent).
pub const SILENCE_S: f64 = 3.0;

/// Chunks of input handled per wake-up before commands get a turn.
const MAX_CHUNKS_PER_SERVICE: usize = 256;

/// A drive on a serial port: the link plus the protocol's codec.
pub struct SerialBackend {
    connection: SerialConnection,
    /// The project limits: console lines are held to them here, where the codec knows the
    /// drive's present mode.
    limits: Limits,
    clock: Clock,
    codec: Box<dyn Codec>,
    link: Option<SerialLink>,
    out: CodecOut,
    /// Events produced while connecting, sent with the first command or poll.
    early: Vec<Event>,
    traffic: Vec<Traffic>,
    /// Session time of the last byte received (or of the connect).
    last_rx_s: f64,
    /// An E-STOP was handed to the codec; the next bytes written are its stop.
    stop_waiting: bool,
    stop_sent: Option<f64>,
}

impl SerialBackend {
    pub fn new(connection: SerialConnection, limits: Limits, clock: Clock) -> Self {
        let codec = connection.protocol.codec(connection.link.baud);
        SerialBackend {
            connection,
            limits,
            clock,
            codec,
            link: None,
            out: CodecOut::new(),
            early: Vec::new(),
            traffic: Vec::new(),
            last_rx_s: 0.0,
            stop_waiting: false,
            stop_sent: None,
        }
    }

    /// What a console line would do, checked against the project limits.
    fn check_raw(&self, text: &str) -> Result<(), String> {
        // One console line is one command: a line end or other control character inside it
        // would make the drive run commands the check below never saw.
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(format!("the line holds a control character ({:?}); send one command per line", c));
        }
        match self.codec.raw_intent(text) {
            RawIntent::Setpoint(mode, value) => {
                self.limits.check_setpoint(mode, value).map_err(|e| e.to_string())
            }
            RawIntent::Param(key, value) => {
                let params = self.codec.params();
                let spec = params
                    .iter()
                    .find(|p| p.key == key)
                    .ok_or_else(|| LimitError::UnknownParam { key: key.clone() }.to_string())?;
                self.limits.check_param(spec, value).map_err(|e| e.to_string())
            }
            RawIntent::Guarded(why) => Err(why),
            RawIntent::Other => Ok(()),
        }
    }

    /// Writes what the codec produced and moves its samples and events out.
    fn drain(
        &mut self,
        now_s: f64,
        samples: &mut Vec<Sample>,
        events: &mut Vec<Event>,
    ) -> Result<(), String> {
        events.append(&mut self.early);
        samples.append(&mut self.out.samples);
        events.append(&mut self.out.events);
        if !self.out.tx.is_empty() {
            let tx = std::mem::take(&mut self.out.tx);
            let link = self.link.as_mut().ok_or("not connected")?;
            link.write(&tx).map_err(|e| e.to_string())?;
            if std::mem::take(&mut self.stop_waiting) {
                self.stop_sent = Some(self.clock.now_s());
            }
            self.traffic.push(Traffic { t_s: now_s, dir: Direction::Tx, bytes: tx });
        }
        if !self.traffic.is_empty() {
            events.push(Event::Traffic(std::mem::take(&mut self.traffic)));
        }
        Ok(())
    }
}

impl Backend for SerialBackend {
    fn connect(&mut self, now_s: f64) -> Result<Connected, String> {
        self.codec = self.connection.protocol.codec(self.connection.link.baud);
        self.out.clear();
        self.early.clear();
        let link = SerialLink::open(&self.connection.link, self.clock).map_err(|e| e.to_string())?;
        if let Some(actual) = link.actual_baud()
            && actual != self.connection.link.baud
        {
            self.early.push(Event::Log(format!(
                "{} runs at {actual} baud, not the {} asked for",
                self.connection.link.port, self.connection.link.baud
            )));
        }
        self.link = Some(link);
        self.last_rx_s = now_s;
        self.codec.start(now_s, &mut self.out);
        let mut samples = Vec::new();
        let mut events = Vec::new();
        self.drain(now_s, &mut samples, &mut events)?;
        self.early = events;
        Ok(Connected { signals: self.codec.signals(), params: self.codec.params() })
    }

    fn disconnect(&mut self) {
        if self.link.is_some() {
            let now_s = self.clock.now_s();
            self.out.clear();
            self.codec.stop(now_s, &mut self.out);
            let tx = std::mem::take(&mut self.out.tx);
            if let Some(link) = &mut self.link {
                let _ = link.write(&tx);
            }
        }
        if let Some(link) = self.link.take() {
            link.close();
        }
        self.out.clear();
        self.early.clear();
        self.traffic.clear();
    }

    fn command(&mut self, cmd: &Command, now_s: f64, events: &mut Vec<Event>) -> Result<(), String> {
        let result = match cmd {
            Command::Connect | Command::Disconnect => Ok(()),
            Command::EStop => {
                self.stop_waiting = true;
                self.codec.estop(now_s, &mut self.out);
                Ok(())
            }
            Command::Raw(text) => match self.check_raw(text) {
                Ok(()) => {
                    self.codec.raw(text, now_s, &mut self.out);
                    Ok(())
                }
                Err(why) => Err(format!("not sent: {why}")),
            },
            other => self.codec.command(other, now_s, &mut self.out).map_err(|e| e.to_string()),
        };
        let mut samples = Vec::new();
        self.drain(now_s, &mut samples, events)?;
        if !samples.is_empty() {
            events.push(Event::Samples(samples));
        }
        result
    }

    fn poll(&mut self, now_s: f64, samples: &mut Vec<Sample>, events: &mut Vec<Event>) -> Result<(), String> {
        if self.codec.can_control() && now_s - self.last_rx_s > SILENCE_S {
            return Err(format!("no answer from the drive for {SILENCE_S:.0} s"));
        }
        self.codec.poll(now_s, &mut self.out);
        self.drain(now_s, samples, events)
    }

    fn poll_interval(&self) -> Duration {
        self.codec.poll_interval()
    }

    fn take_stop_sent(&mut self) -> Option<f64> {
        self.stop_sent.take()
    }

    fn input(&self) -> Option<Receiver<LinkInput>> {
        self.link.as_ref().map(|l| l.input().clone())
    }

    fn service(
        &mut self,
        now_s: f64,
        samples: &mut Vec<Sample>,
        events: &mut Vec<Event>,
    ) -> Result<(), String> {
        let Some(link) = &self.link else { return Ok(()) };
        let input = link.input().clone();
        for _ in 0..MAX_CHUNKS_PER_SERVICE {
            match input.try_recv() {
                Ok(LinkInput::Bytes { t_s, bytes }) => {
                    self.last_rx_s = t_s;
                    self.codec.feed(&bytes, t_s, &mut self.out);
                    self.traffic.push(Traffic { t_s, dir: Direction::Rx, bytes });
                }
                Ok(LinkInput::Lost(reason)) => {
                    let _ = self.drain(now_s, samples, events);
                    return Err(format!("link lost: {reason}"));
                }
                Err(_) => break,
            }
        }
        self.drain(now_s, samples, events)
    }
}

/// If the worker is held up for longer than this, the simulation skips ahead instead of
/// computing a burst of stale samples.
const MAX_CATCH_UP_S: f64 = 0.5;

/// The simulated drive, run in step with the session clock.
pub struct SimBackend {
    config: SimConfig,
    drive: Option<SimDrive>,
    /// Session time at simulation time zero.
    t0_s: f64,
    frames: Vec<TelemetryFrame>,
    reported: Option<DriveState>,
    reported_mode: Option<(ControlMode, f64)>,
    /// Samples computed while catching up before a command, sent with the next poll.
    pending: Vec<Sample>,
    clock: Clock,
    stop_sent: Option<f64>,
}

impl SimBackend {
    pub fn new(config: SimConfig, clock: Clock) -> Self {
        SimBackend {
            clock,
            stop_sent: None,
            config,
            drive: None,
            t0_s: 0.0,
            frames: Vec::new(),
            reported: None,
            reported_mode: None,
            pending: Vec::new(),
        }
    }

    fn drive(&mut self) -> Result<&mut SimDrive, String> {
        self.drive.as_mut().ok_or_else(|| "not connected".to_owned())
    }

    fn report_state(&mut self, events: &mut Vec<Event>) {
        let Some(drive) = &self.drive else { return };
        let state = match drive.fault() {
            Some(fault) => DriveState::Fault(fault.to_string()),
            None if drive.is_enabled() => DriveState::Enabled,
            None => DriveState::Idle,
        };
        if self.reported.as_ref() != Some(&state) {
            self.reported = Some(state.clone());
            events.push(Event::State(state));
        }
    }

    /// Reports the mode and setpoint whenever the drive changed them, by command or by itself
    /// (an e-stop or a fault trip zeroes the setpoint; enabling in position mode holds the
    /// present position), so the UI never builds on a stale setpoint.
    fn report_mode(&mut self, events: &mut Vec<Event>) {
        let Some(d) = &self.drive else { return };
        let now = (d.mode(), d.setpoint());
        if self.reported_mode != Some(now) {
            self.reported_mode = Some(now);
            events.push(Event::Mode { mode: now.0, setpoint: now.1 });
        }
    }

    /// Runs the simulation up to session time `now_s`, appending samples.
    fn advance_to(&mut self, now_s: f64, samples: &mut Vec<Sample>, events: &mut Vec<Event>) {
        let t0_s = self.t0_s;
        let Some(drive) = self.drive.as_mut() else { return };
        let mut behind_s = now_s - t0_s - drive.time_s();
        if behind_s > MAX_CATCH_UP_S {
            let skipped = behind_s - MAX_CATCH_UP_S;
            self.t0_s += skipped;
            behind_s = MAX_CATCH_UP_S;
            events.push(Event::Log(format!("simulation was held up; skipped {skipped:.3} s")));
        }
        if behind_s > 0.0 {
            self.frames.clear();
            drive.advance(behind_s, &mut self.frames);
            for f in &self.frames {
                let t_s = self.t0_s + f.t_s;
                for (i, value) in f.values().into_iter().enumerate() {
                    samples.push(Sample { t_s, signal: i as u16, value });
                }
            }
        }
    }
}

impl Backend for SimBackend {
    fn take_stop_sent(&mut self) -> Option<f64> {
        self.stop_sent.take()
    }

    fn connect(&mut self, now_s: f64) -> Result<Connected, String> {
        self.drive = Some(SimDrive::new(&self.config));
        self.t0_s = now_s;
        self.reported = Some(DriveState::Idle);
        self.reported_mode = None;
        self.pending.clear();
        Ok(Connected {
            signals: TelemetryFrame::SIGNALS.iter().map(|(n, u)| SignalSpec::new(n, u)).collect(),
            params: SimDrive::param_specs(),
        })
    }

    fn disconnect(&mut self) {
        if let Some(d) = &mut self.drive {
            d.disable();
        }
        self.drive = None;
        self.reported = None;
    }

    fn command(&mut self, cmd: &Command, now_s: f64, events: &mut Vec<Event>) -> Result<(), String> {
        // Apply the command at the time it was given, not at the last poll: the simulation
        // catches up first (those samples go out with the next poll).
        let mut pending = std::mem::take(&mut self.pending);
        self.advance_to(now_s, &mut pending, events);
        self.pending = pending;
        let drive = self.drive()?;
        match cmd {
            Command::Connect | Command::Disconnect => {}
            Command::Enable => drive.enable().map_err(|e| e.to_string())?,
            Command::Disable => drive.disable(),
            Command::EStop => {
                drive.estop();
                self.stop_sent = Some(self.clock.now_s());
            }
            Command::ResetFaults => drive.reset_faults(),
            Command::SetMode(mode) => drive.set_mode(*mode),
            Command::SetSetpoint(mode, value) => {
                if drive.mode() != *mode {
                    return Err(format!(
                        "a {} setpoint is not applied: the drive is in {} mode",
                        mode.label().to_lowercase(),
                        drive.mode().label().to_lowercase()
                    ));
                }
                drive.set_setpoint(*value);
            }
            Command::ReadParam(key) => {
                let value = drive.read_param(key).map_err(|e| e.to_string())?;
                events.push(Event::ParamValue { key: key.clone(), value });
            }
            Command::WriteParam(key, value) => {
                drive.write_param(key, *value).map_err(|e| e.to_string())?;
                let value = drive.read_param(key).map_err(|e| e.to_string())?;
                events.push(Event::ParamWritten { key: key.clone(), value });
            }
            Command::Raw(_) => return Err("the simulated drive has no console".into()),
            Command::ReadAllParams => {
                for spec in SimDrive::param_specs() {
                    if let Ok(value) = drive.read_param(&spec.key) {
                        events.push(Event::ParamValue { key: spec.key, value });
                    }
                }
            }
        }
        if *cmd == Command::ReadAllParams {
            // An explicit read: report even if unchanged.
            self.reported_mode = None;
        }
        self.report_mode(events);
        self.report_state(events);
        Ok(())
    }

    fn poll(&mut self, now_s: f64, samples: &mut Vec<Sample>, events: &mut Vec<Event>) -> Result<(), String> {
        samples.append(&mut self.pending);
        self.advance_to(now_s, samples, events);
        self.report_mode(events);
        self.report_state(events);
        Ok(())
    }
}
