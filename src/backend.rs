//! Backends a worker can drive: the built-in simulated drive today; serial links with their
//! protocol codecs slot in beside it. `for_connection` picks one from a project entry.

use crate::drive::{Command, DriveState, Event, Sample, SignalSpec};
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
}

impl SimBackend {
    pub fn new(config: SimConfig) -> Self {
        SimBackend { config, drive: None, t0_s: 0.0, frames: Vec::new(), reported: None }
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

    fn report_mode(&self, events: &mut Vec<Event>) {
        if let Some(d) = &self.drive {
            events.push(Event::Mode { mode: d.mode(), setpoint: d.setpoint() });
        }
    }
}

impl Backend for SimBackend {
    fn connect(&mut self, now_s: f64) -> Result<Connected, String> {
        self.drive = Some(SimDrive::new(&self.config));
        self.t0_s = now_s;
        self.reported = Some(DriveState::Idle);
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

    fn command(&mut self, cmd: &Command, _now_s: f64, events: &mut Vec<Event>) -> Result<(), String> {
        let drive = self.drive()?;
        match cmd {
            Command::Connect | Command::Disconnect => {}
            Command::Enable => drive.enable().map_err(|e| e.to_string())?,
            Command::Disable => drive.disable(),
            Command::EStop => drive.estop(),
            Command::ResetFaults => drive.reset_faults(),
            Command::SetMode(mode) => drive.set_mode(*mode),
            Command::SetSetpoint(value) => drive.set_setpoint(*value),
            Command::ReadParam(key) => {
                let value = drive.read_param(key).map_err(|e| e.to_string())?;
                events.push(Event::ParamValue { key: key.clone(), value });
            }
            Command::WriteParam(key, value) => {
                drive.write_param(key, *value).map_err(|e| e.to_string())?;
                let value = drive.read_param(key).map_err(|e| e.to_string())?;
                events.push(Event::ParamValue { key: key.clone(), value });
            }
            Command::ReadAllParams => {
                for spec in SimDrive::param_specs() {
                    if let Ok(value) = drive.read_param(&spec.key) {
                        events.push(Event::ParamValue { key: spec.key, value });
                    }
                }
            }
        }
        if matches!(cmd, Command::SetMode(_) | Command::SetSetpoint(_) | Command::ReadAllParams) {
            self.report_mode(events);
        }
        self.report_state(events);
        Ok(())
    }

    fn poll(&mut self, now_s: f64, samples: &mut Vec<Sample>, events: &mut Vec<Event>) -> Result<(), String> {
        let t0_s = self.t0_s;
        let Some(drive) = self.drive.as_mut() else { return Ok(()) };
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
        self.report_state(events);
        Ok(())
    }
}
