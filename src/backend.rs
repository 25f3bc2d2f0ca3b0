//! Backends a worker can drive: the built-in simulated drive today; serial links with their
//! protocol codecs slot in beside it. `for_connection` picks one from a project entry.

use crate::drive::{Command, ControlMode, DriveState, Event, Sample, SignalSpec};
use crate::project::Connection;
use crate::sim::{SimConfig, SimDrive, TelemetryFrame};
use crate::worker::{Backend, Connected};

/// The backend for a project connection.
pub fn for_connection(connection: &Connection) -> Box<dyn Backend> {
    match connection {
        Connection::Simulated(cfg) => Box::new(SimBackend::new(cfg.clone())),
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
}

impl SimBackend {
    pub fn new(config: SimConfig) -> Self {
        SimBackend {
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
            Command::EStop => drive.estop(),
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
