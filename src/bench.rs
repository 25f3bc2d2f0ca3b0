//! The running bench, shared by the GUI and the command line: each drive's worker, its
//! latest state, catalogue and telemetry store, and the limit checks every command passes
//! before it is queued for the drive.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use crossbeam_channel::TryRecvError;
use thiserror::Error;

use crate::backend;
use crate::console::Console;
use crate::drive::{Command, ControlMode, DriveState, Event, LimitError, ParamSpec, SignalSpec};
use crate::project::{Connection, DriveConfig, Project};
use crate::telemetry::{
    DriveTelemetry, RecordError, RecordHub, RecordSummary, RecordedDrive, Recording, SharedTelemetry,
};
use crate::worker::{Clock, RepaintFn, SampleTap, SendError, Worker};

/// Messages kept per drive for the UI.
const MESSAGE_HISTORY: usize = 100;

/// Why a command did not leave the app.
#[derive(Debug, Error, PartialEq)]
pub enum CommandError {
    #[error("refused: {0}")]
    Limit(#[from] LimitError),
    #[error("{0}")]
    Send(#[from] SendError),
    #[error("the drive is not connected")]
    NotConnected,
    #[error("refused: {0}")]
    Envelope(String),
}

/// How long a reconnected drive has to report its identity again before it is let go.
pub const IDENTITY_WAIT_S: f64 = 10.0;

/// One drive on the running bench.
pub struct DriveRuntime {
    /// Stable within the session (egui ids, selection).
    pub id: u64,
    pub config: DriveConfig,
    worker: Option<Worker>,
    pub state: DriveState,
    /// The signals as the drive announced them (the store holds one series per signal).
    pub signals: Vec<SignalSpec>,
    /// Every sample since the drive connected (up to the history capacity), filled by the
    /// worker thread itself.
    telemetry: SharedTelemetry,
    /// For every E-STOP this session: seconds from the request to the stop on the wire.
    pub estop_latencies_s: Vec<f64>,
    /// Every loss of the link this session: session time and reason.
    pub link_losses: Vec<(f64, String)>,
    /// Set for a drive shown from a recording file: no worker, never commanded.
    pub recorded_from: Option<PathBuf>,
    pub catalogue: Vec<ParamSpec>,
    /// Latest values read back from the drive.
    pub values: BTreeMap<String, f64>,
    pub mode: ControlMode,
    pub setpoint: f64,
    /// Samples lost between the worker and this store.
    pub dropped: u64,
    /// Refusals, failures and log lines, newest last, with session time.
    pub messages: VecDeque<(f64, String)>,
    /// Traffic on a serial drive's link.
    pub console: Console,
    /// Firmware/hardware as the drive reports them.
    pub identity: Option<String>,
    /// Set when a drive that had reported an identity came back after a lost link: until it
    /// reports the same identity again (by the session time held here), Enable is refused.
    identity_due_s: Option<f64>,
    /// The protocol's own state text (CiA 402 state, VESC status bits).
    pub status: Option<String>,
    hub: Arc<RecordHub>,
    clock: Clock,
}

impl DriveRuntime {
    fn new(id: u64, config: DriveConfig, capacity: usize, clock: Clock, hub: Arc<RecordHub>) -> Self {
        DriveRuntime {
            id,
            mode: config.mode,
            config,
            worker: None,
            state: DriveState::Disconnected,
            signals: Vec::new(),
            telemetry: SharedTelemetry::new(capacity),
            recorded_from: None,
            link_losses: Vec::new(),
            estop_latencies_s: Vec::new(),
            catalogue: Vec::new(),
            values: BTreeMap::new(),
            setpoint: 0.0,
            dropped: 0,
            messages: VecDeque::new(),
            console: Console::new(),
            identity: None,
            identity_due_s: None,
            status: None,
            hub,
            clock,
        }
    }

    /// The drive's telemetry store, locked: hold it only for the queries at hand (the
    /// worker waits for it to append).
    pub fn telemetry(&self) -> MutexGuard<'_, DriveTelemetry> {
        self.telemetry.lock()
    }

    /// Frames per second, measured on the sample times.
    pub fn rate_hz(&self) -> f64 {
        self.telemetry().rate.rate_hz
    }

    /// True for a drive shown from a recording.
    pub fn is_recorded(&self) -> bool {
        self.recorded_from.is_some()
    }

    /// True for drives on a serial link (they have a console).
    pub fn is_serial(&self) -> bool {
        matches!(self.config.connection, Connection::Serial(_))
    }

    /// Why the drive's parameter catalogue is empty or partial, if the protocol says.
    pub fn params_note(&self) -> Option<&'static str> {
        self.config.connection.serial().and_then(|s| s.protocol.params_note())
    }

    /// False for telemetry-only drives (Serial Plotter): no enable, setpoints or e-stop.
    pub fn can_control(&self) -> bool {
        !self.is_recorded() && self.config.connection.serial().is_none_or(|s| s.protocol.can_control())
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn is_running(&self) -> bool {
        self.worker.is_some()
    }

    /// The store of a signal by name.
    pub fn signal_unit(&self, signal: &str) -> Option<&str> {
        self.signals.iter().find(|s| s.name == signal).map(|s| s.unit.as_str())
    }

    pub fn param_spec(&self, key: &str) -> Option<&ParamSpec> {
        self.catalogue.iter().find(|p| p.key == key)
    }

    pub fn last_message(&self) -> Option<&str> {
        self.messages.back().map(|(_, m)| m.as_str())
    }

    /// Starts the worker and connects.
    pub fn connect(&mut self, repaint: Option<RepaintFn>) {
        let clock = self.clock;
        if self.is_recorded() {
            return;
        }
        // A connect by the user accepts whatever drive answers; a reconnect after a lost link
        // (the Reconnect button, or the worker by itself) must find the same one.
        if !matches!(self.state, DriveState::LinkLost { .. }) {
            self.identity = None;
            self.identity_due_s = None;
        }
        if self.worker.is_none() {
            let backend = backend::for_drive(&self.config, clock);
            let tap = SampleTap { drive_id: self.id, store: self.telemetry.clone(), hub: self.hub.clone() };
            let worker = Worker::spawn(&self.config.name, backend, clock, repaint, Some(tap));
            worker.set_auto_reconnect(self.config.auto_reconnect);
            self.worker = Some(worker);
        }
        if let Some(w) = &self.worker
            && let Err(e) = w.send(Command::Connect)
        {
            self.note(clock.now_s(), format!("connect: {e}"));
        }
    }

    /// Releases the port of a drive that cannot be trusted to be the project's (its identity
    /// changed or never came after a reconnect): stops the worker and shows why as a fault.
    fn let_go(&mut self, now_s: f64, message: String) {
        self.note(now_s, message.clone());
        self.disconnect();
        self.identity = None;
        self.identity_due_s = None;
        self.state = DriveState::Fault(message);
    }

    /// Whether a lost link is retried by itself; applies at once to a running worker.
    pub fn set_auto_reconnect(&mut self, on: bool) {
        self.config.auto_reconnect = on;
        if let Some(w) = &self.worker {
            w.set_auto_reconnect(on);
        }
    }

    /// Disables the drive and stops its worker (joins the thread).
    pub fn disconnect(&mut self) {
        if let Some(w) = self.worker.take() {
            w.shutdown();
        }
        // A link-lost interval ends here: the drive is no longer expected back.
        self.telemetry().close_gap(self.clock.now_s());
        self.state = DriveState::Disconnected;
    }

    /// Checks a command against the project limits and the drive's catalogue, then queues it.
    /// Nothing outside the limits ever reaches the worker.
    pub fn send(&mut self, cmd: Command) -> Result<(), CommandError> {
        let result = self.check_and_send(cmd.clone());
        if let Err(e) = &result {
            self.note(self.clock.now_s(), format!("{}: {e}", command_text(&cmd)));
        }
        result
    }

    fn check_and_send(&mut self, cmd: Command) -> Result<(), CommandError> {
        match &cmd {
            Command::SetSetpoint(mode, value) => self.config.limits.check_setpoint(*mode, *value)?,
            Command::WriteParam(key, value) => {
                let spec =
                    self.param_spec(key).ok_or_else(|| LimitError::UnknownParam { key: key.clone() })?;
                self.config.limits.check_param(spec, *value)?;
            }
            Command::Enable => {
                if let Some(why) = self.envelope_violation() {
                    return Err(CommandError::Envelope(why));
                }
                if self.identity_due_s.is_some() {
                    return Err(CommandError::Envelope(
                        "the drive has not yet said who it is after the reconnect".into(),
                    ));
                }
            }
            // A console line is checked in the worker, by the codec that knows the drive's
            // present mode, against the limits the backend was built with.
            _ => {}
        }
        let worker = self.worker.as_ref().ok_or(CommandError::NotConnected)?;
        worker.send(cmd.clone())?;
        match cmd {
            Command::SetMode(mode) => {
                self.mode = mode;
                self.config.mode = mode;
            }
            Command::SetSetpoint(mode, value) if mode == self.mode => self.setpoint = value,
            _ => {}
        }
        Ok(())
    }

    /// E-stop through the worker's priority path. The drive drops its setpoint to a safe
    /// value (and reports it); the local copy follows at once so that nothing builds on it.
    pub fn estop(&mut self) {
        if let Some(w) = &self.worker {
            w.estop();
            if self.mode != ControlMode::Position {
                self.setpoint = 0.0;
            }
        }
    }

    fn note(&mut self, t_s: f64, text: String) {
        crate::logfile::line(&self.config.name, &format!("t={t_s:.3} s: {text}"));
        if self.messages.len() == MESSAGE_HISTORY {
            self.messages.pop_front();
        }
        self.messages.push_back((t_s, text));
    }

    /// Drains this drive's events until `deadline` (samples went into the store on the
    /// worker thread already). Returns false if it stopped because of the deadline.
    pub fn pump(&mut self, deadline: Instant, now_s: f64) -> bool {
        if self.identity_due_s.is_some_and(|due| now_s > due) && self.worker.is_some() {
            let message = format!(
                "the drive did not say who it is within {IDENTITY_WAIT_S:.0} s of the reconnect (it was `{}`); \
                 disconnected — check it, then Connect",
                self.identity.as_deref().unwrap_or("?")
            );
            self.let_go(now_s, message);
            return true;
        }
        loop {
            let Some(worker) = &self.worker else { return true };
            let ev = match worker.events().try_recv() {
                Ok(ev) => ev,
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => {
                    if !matches!(self.state, DriveState::Fault(_)) {
                        self.state = DriveState::Fault("the drive's worker stopped".into());
                    }
                    self.worker = None;
                    return true;
                }
            };
            self.apply(ev, now_s);
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    fn apply(&mut self, ev: Event, now_s: f64) {
        match ev {
            Event::State(state) => {
                if let DriveState::Fault(text) = &state {
                    self.note(now_s, format!("fault: {text}"));
                } else if let DriveState::LinkLost { since_s, reason } = &state {
                    self.link_losses.push((*since_s, reason.clone()));
                    self.note(now_s, format!("link lost: {reason}; reconnecting"));
                } else if state != self.state {
                    crate::logfile::line(&self.config.name, &format!("t={now_s:.3} s: {}", state.label()));
                }
                if state == DriveState::Idle && self.state == DriveState::Connecting {
                    self.after_connect(now_s);
                }
                if state == DriveState::Idle
                    && matches!(self.state, DriveState::LinkLost { .. })
                    && self.identity.is_some()
                {
                    self.identity_due_s = Some(now_s + IDENTITY_WAIT_S);
                }
                self.state = state;
            }
            // The worker updated the store itself and sends the store's list (by name, so a
            // reconnect keeps the history).
            Event::Signals(signals) => self.signals = signals,
            Event::Params(catalogue) => self.catalogue = catalogue,
            // Workers started by the bench put samples into the store themselves; this is
            // only reached by a worker without a tap.
            Event::Samples(mut samples) => {
                {
                    let mut store = self.telemetry();
                    store.remap(&mut samples);
                    store.push(&samples);
                }
                self.hub.offer(self.id, &samples);
            }
            Event::ParamValue { key, value } => {
                self.enforce_envelope(&key, value, now_s);
                self.values.insert(key, value);
            }
            Event::ParamWritten { key, value } => {
                // Only accepted writes become part of the project.
                self.config.params.insert(key.clone(), value);
                self.enforce_envelope(&key, value, now_s);
                self.values.insert(key, value);
            }
            Event::Mode { mode, setpoint } => {
                self.mode = mode;
                self.setpoint = setpoint;
            }
            Event::Refused(text) => self.note(now_s, text),
            Event::Dropped(n) => self.dropped = n,
            Event::Log(text) => self.note(now_s, text),
            Event::Identity(text) => {
                self.identity_due_s = None;
                if let Some(before) = self.identity.as_ref().filter(|&before| *before != text) {
                    // A reconnect by path reached another board (the OS gave the port's name to
                    // another adapter, or the cables were swapped): its limits and parameters
                    // are not the project's. Let go of it.
                    let message = format!(
                        "another drive (or firmware) answers on this port: it was `{before}`, it is now \
                         `{text}`; disconnected — check the cabling, then Connect to accept it"
                    );
                    self.let_go(now_s, message);
                    return;
                }
                self.note(now_s, format!("drive reports: {text}"));
                self.identity = Some(text);
            }
            Event::Status(text) => self.status = Some(text),
            Event::EStopSent { latency_s } => {
                self.estop_latencies_s.push(latency_s);
                crate::logfile::line(
                    &self.config.name,
                    &format!("t={now_s:.3} s: E-STOP out {:.2} ms after the request", latency_s * 1e3),
                );
            }
            Event::Traffic(chunks) => {
                for chunk in chunks {
                    self.console.push(chunk);
                }
            }
        }
    }

    /// A drive whose own current or speed limit is above the project envelope would let the
    /// motor exceed the envelope without any setpoint doing so: lower the drive's limit to the
    /// envelope. Until the drive confirms, Enable is refused (see `envelope_violation`).
    fn enforce_envelope(&mut self, key: &str, value: f64, now_s: f64) {
        let Some(spec) = self.param_spec(key) else { return };
        let Some(ceiling) = self.config.limits.ceiling_for(spec) else { return };
        if value <= ceiling || spec.read_only || !self.is_running() {
            return;
        }
        let unit = spec.unit.clone();
        let lowered = ceiling.max(spec.min);
        self.note(
            now_s,
            format!("the drive's {key} = {value} {unit} is above the project limit; lowering it to {lowered} {unit}"),
        );
        let key = key.to_owned();
        if let Err(e) = self.send(Command::WriteParam(key.clone(), lowered)) {
            self.note(now_s, format!("cannot lower {key}: {e}"));
        }
    }

    /// A drive-side limit known to be above the project envelope, if any.
    pub fn envelope_violation(&self) -> Option<String> {
        self.catalogue.iter().find_map(|spec| {
            let ceiling = self.config.limits.ceiling_for(spec)?;
            let value = *self.values.get(&spec.key)?;
            (value > ceiling).then(|| {
                format!(
                    "the drive's {} = {value} {} exceeds the project limit {ceiling}",
                    spec.key, spec.unit
                )
            })
        })
    }

    /// Restores the project's mode and parameters once the drive is up.
    fn after_connect(&mut self, now_s: f64) {
        let params: Vec<(String, f64)> = self.config.params.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (key, value) in params {
            if let Err(e) = self.send(Command::WriteParam(key.clone(), value)) {
                self.note(now_s, format!("project parameter {key} not written: {e}"));
            }
        }
        let mode = self.config.mode;
        let _ = self.send(Command::SetMode(mode));
    }
}

impl Drop for DriveRuntime {
    fn drop(&mut self) {
        self.disconnect();
    }
}

fn command_text(cmd: &Command) -> String {
    cmd.describe()
}

/// Every drive of the running bench on one clock.
pub struct Bench {
    pub clock: Clock,
    pub drives: Vec<DriveRuntime>,
    next_id: u64,
    capacity: usize,
    repaint: Option<RepaintFn>,
    pump_start: usize,
    hub: Arc<RecordHub>,
    recording: Option<Recording>,
}

impl Bench {
    /// Builds the bench of a project; nothing is connected yet.
    pub fn new(project: &Project, repaint: Option<RepaintFn>) -> Self {
        let mut bench = Bench {
            clock: Clock::new(),
            drives: Vec::new(),
            next_id: 1,
            capacity: project.history.samples_per_signal,
            repaint,
            pump_start: 0,
            hub: RecordHub::new(),
            recording: None,
        };
        for d in &project.drives {
            bench.add(d.clone());
        }
        bench
    }

    /// Adds a drive (not connected) and returns its index.
    pub fn add(&mut self, config: DriveConfig) -> usize {
        self.drives.push(DriveRuntime::new(
            self.next_id,
            config,
            self.capacity,
            self.clock,
            self.hub.clone(),
        ));
        self.next_id += 1;
        self.drives.len() - 1
    }

    /// Disconnects and removes a drive.
    pub fn remove(&mut self, index: usize) {
        if index < self.drives.len() {
            self.drives.remove(index);
        }
    }

    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.drives.iter().position(|d| d.id == id)
    }

    pub fn by_name(&self, name: &str) -> Option<&DriveRuntime> {
        self.drives.iter().find(|d| d.config.name == name)
    }

    pub fn connect(&mut self, index: usize) {
        let repaint = self.repaint.clone();
        if let Some(d) = self.drives.get_mut(index) {
            d.connect(repaint);
        }
    }

    pub fn connect_all(&mut self) {
        for i in 0..self.drives.len() {
            self.connect(i);
        }
    }

    /// Stops every connected drive by its fastest path.
    pub fn estop_all(&mut self) {
        for d in &mut self.drives {
            d.estop();
        }
    }

    /// Disables every running drive (used before quitting or closing a project).
    pub fn disable_all(&mut self) {
        for d in &mut self.drives {
            if d.is_running() {
                let _ = d.send(Command::Disable);
            }
        }
    }

    pub fn any_enabled(&self) -> bool {
        self.drives.iter().any(|d| d.state == DriveState::Enabled)
    }

    /// Drains every drive's events within the time budget; true if all queues were emptied.
    pub fn pump(&mut self, budget: std::time::Duration) -> bool {
        let deadline = Instant::now() + budget;
        let now_s = self.clock.now_s();
        let mut done = true;
        // Start with a different drive each time, so that one flooding drive cannot starve
        // the others when the budget runs out.
        let n = self.drives.len();
        self.pump_start = if n == 0 { 0 } else { (self.pump_start + 1) % n };
        for k in 0..n {
            let i = (self.pump_start + k) % n;
            done &= self.drives[i].pump(deadline, now_s);
        }
        done
    }

    /// The project as it stands now: the given layout plus every drive's current configuration.
    pub fn to_project(&self, base: &Project) -> Project {
        let live = self.drives.iter().filter(|d| !d.is_recorded());
        Project { drives: live.map(|d| d.config.clone()).collect(), ..base.clone() }
    }

    /// Heap bytes held by every telemetry store.
    pub fn memory_bytes(&self) -> usize {
        self.drives.iter().map(|d| d.telemetry().memory_bytes()).sum()
    }

    /// Starts recording every sample of every live drive to `path` (CSV, the layout of
    /// `drivebench record`). The columns are the drives' signals as announced now.
    pub fn start_recording(&mut self, path: &Path) -> Result<(), RecordError> {
        if self.recording.is_some() {
            return Err(RecordError::AlreadyRecording);
        }
        let drives = self
            .drives
            .iter()
            .filter(|d| !d.is_recorded())
            .map(|d| RecordedDrive {
                id: d.id,
                name: d.config.name.clone(),
                signals: d.telemetry().signals().to_vec(),
            })
            .collect();
        self.recording = Some(Recording::start(&self.hub, path, drives)?);
        Ok(())
    }

    /// Samples kept per signal in the live stores.
    pub fn history_capacity(&self) -> usize {
        self.capacity
    }

    /// Resizes every live drive's store (keeping the newest samples) and the stores of drives
    /// added later.
    pub fn set_history_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        for d in self.drives.iter().filter(|d| !d.is_recorded()) {
            d.telemetry().set_capacity(capacity);
        }
    }

    /// Ends the recording: everything received is written and the file closed.
    pub fn stop_recording(&mut self) -> Option<Result<RecordSummary, RecordError>> {
        self.recording.take().map(Recording::stop)
    }

    pub fn recording(&self) -> Option<&Recording> {
        self.recording.as_ref()
    }

    /// Adds a drive shown from a recording file: its samples, no worker.
    pub fn add_recorded(&mut self, name: String, path: &Path, telemetry: DriveTelemetry) -> usize {
        let config = DriveConfig { name, ..DriveConfig::default() };
        let mut d = DriveRuntime::new(self.next_id, config, self.capacity, self.clock, self.hub.clone());
        d.signals = telemetry.signals().to_vec();
        d.telemetry = SharedTelemetry::from(telemetry);
        d.recorded_from = Some(path.to_owned());
        self.drives.push(d);
        self.next_id += 1;
        self.drives.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pump_until(bench: &mut Bench, what: &str, mut pred: impl FnMut(&Bench) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            bench.pump(Duration::from_millis(5));
            if pred(bench) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("timed out waiting for {what}");
    }

    /// The demo bench with its first drive connected and idle.
    fn connected_demo_bench() -> Bench {
        let mut bench = Bench::new(&Project::demo(), None);
        bench.connect(0);
        pump_until(&mut bench, "connect", |b| b.drives[0].state == DriveState::Idle);
        bench
    }

    #[test]
    fn a_reconnected_drive_must_say_who_it_is_before_it_can_be_enabled() {
        // The events a worker sends for a drive that reported an identity, lost its link and
        // came back (a simulated drive connected for real, the rest replayed).
        let mut bench = connected_demo_bench();
        let d = &mut bench.drives[0];
        let t = d.clock.now_s();
        d.apply(Event::Identity("board A".into()), t);
        d.apply(Event::State(DriveState::LinkLost { since_s: t, reason: "pulled".into() }), t);
        d.apply(Event::State(DriveState::Idle), t + 1.0);
        let err = d.send(Command::Enable).unwrap_err();
        assert!(err.to_string().contains("not yet said who it is"), "{err}");
        // The same board: accepted, Enable goes out.
        d.apply(Event::Identity("board A".into()), t + 1.2);
        d.send(Command::Enable).unwrap();
        pump_until(&mut bench, "enabled", |b| b.drives[0].state == DriveState::Enabled);
        // Lost again, and nothing says who answers: let go after IDENTITY_WAIT_S.
        let d = &mut bench.drives[0];
        let t = d.clock.now_s();
        d.apply(Event::State(DriveState::LinkLost { since_s: t, reason: "pulled".into() }), t);
        d.apply(Event::State(DriveState::Idle), t);
        assert!(d.pump(Instant::now(), t + IDENTITY_WAIT_S - 1.0));
        assert!(d.is_running());
        d.pump(Instant::now(), t + IDENTITY_WAIT_S + 0.1);
        assert!(!d.is_running(), "let go of the port");
        assert!(
            matches!(&d.state, DriveState::Fault(m) if m.contains("did not say who it is") && m.contains("board A"))
        );
        // A Connect by the user starts afresh: no identity is expected.
        bench.connect(0);
        pump_until(&mut bench, "connected again", |b| b.drives[0].state == DriveState::Idle);
        bench.drives[0].send(Command::Enable).unwrap();
    }

    #[test]
    fn history_and_recording_keep_every_sample_while_nobody_pumps_events() {
        // A minimised or frozen UI stops pumping events: the stores and the recording must
        // still get every frame, straight from the workers.
        let mut bench = Bench::new(&Project::demo(), None);
        bench.connect_all();
        pump_until(&mut bench, "connect", |b| b.drives.iter().all(|d| d.state == DriveState::Idle));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.csv");
        bench.start_recording(&path).unwrap();
        assert!(matches!(bench.start_recording(&path), Err(RecordError::AlreadyRecording)));
        let before: Vec<u64> =
            bench.drives.iter().map(|d| d.telemetry().series("speed_rpm").unwrap().total_pushed()).collect();
        std::thread::sleep(Duration::from_millis(1500));
        for (d, before) in bench.drives.iter().zip(&before) {
            let now = d.telemetry().series("speed_rpm").unwrap().total_pushed();
            assert!(now - before > 1000, "{}: {before} -> {now} frames without any pump", d.name());
        }
        let summary = bench.stop_recording().unwrap().unwrap();
        assert_eq!(summary.lost, 0);
        assert!(bench.recording().is_none());
        // Every 1 kHz frame of each drive is a row: consecutive times 1 ms apart, no gap.
        let mut reader = csv::Reader::from_path(&path).unwrap();
        let headers = reader.headers().unwrap().clone();
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let cols = [col("left.speed_rpm"), col("right.speed_rpm")];
        let mut times: [Vec<f64>; 2] = Default::default();
        for row in reader.records() {
            let row = row.unwrap();
            let t: f64 = row[0].parse().unwrap();
            for (k, &c) in cols.iter().enumerate() {
                if !row[c].is_empty() {
                    times[k].push(t);
                }
            }
        }
        for (k, t) in times.iter().enumerate() {
            assert!(t.len() > 1400, "drive {k}: {} rows", t.len());
            assert_eq!(summary.rows_per_drive[k].1, t.len() as u64);
            for w in t.windows(2) {
                assert!((w[1] - w[0] - 1e-3).abs() < 2e-6, "drive {k}: a gap between {} and {}", w[0], w[1]);
            }
        }
    }

    #[test]
    fn out_of_range_setpoint_never_reaches_the_worker() {
        let mut bench = connected_demo_bench();
        let d = &mut bench.drives[0];
        d.send(Command::SetMode(ControlMode::Speed)).unwrap();
        let err = d.send(Command::SetSetpoint(ControlMode::Speed, 1e6)).unwrap_err();
        assert!(matches!(err, CommandError::Limit(LimitError::OutOfRange { .. })), "{err}");
        assert_eq!(d.setpoint, 0.0);
        assert!(d.last_message().unwrap().contains("outside"));
    }

    #[test]
    fn drive_limits_above_the_project_envelope_are_lowered_before_enable() {
        let mut project = Project::demo();
        project.drives[0].limits.max_current_a = 3.0;
        project.drives[0].limits.max_speed_rpm = 1500.0;
        let mut bench = Bench::new(&project, None);
        bench.connect(0);
        pump_until(&mut bench, "connect", |b| b.drives[0].state == DriveState::Idle);
        // The simulated drive starts with 7.5 A and 4000 rpm: Enable waits until it agrees.
        pump_until(&mut bench, "limits lowered", |b| {
            b.drives[0].values.get("current_limit_a") == Some(&3.0)
                && b.drives[0].values.get("speed_limit_rpm") == Some(&1500.0)
        });
        assert!(bench.drives[0].envelope_violation().is_none());
        assert!(bench.drives[0].messages.iter().any(|(_, m)| m.contains("lowering it to 3")));
        bench.drives[0].send(Command::Enable).unwrap();
        // Without the lowering, a violation refuses Enable.
        bench.drives[0].values.insert("current_limit_a".into(), 7.5);
        let err = bench.drives[0].send(Command::Enable).unwrap_err();
        assert!(matches!(err, CommandError::Envelope(_)), "{err}");
    }

    #[test]
    fn a_setpoint_meant_for_another_mode_is_not_applied() {
        let mut bench = connected_demo_bench();
        let d = &mut bench.drives[0];
        d.send(Command::SetMode(ControlMode::Current)).unwrap();
        // 3000 is fine as a speed but would be 3000 A in current mode: checked as a speed, it
        // must not be applied by a drive that is in current mode.
        d.send(Command::SetSetpoint(ControlMode::Speed, 3000.0)).unwrap();
        pump_until(&mut bench, "refusal", |b| {
            b.drives[0].messages.iter().any(|(_, m)| m.contains("current mode"))
        });
        bench.drives[0].send(Command::ReadAllParams).unwrap();
        pump_until(&mut bench, "mode report", |b| b.drives[0].mode == ControlMode::Current);
        assert_eq!(bench.drives[0].setpoint, 0.0);
        let err = bench.drives[0].send(Command::SetSetpoint(ControlMode::Current, 3000.0)).unwrap_err();
        assert!(matches!(err, CommandError::Limit(_)), "{err}");
    }

    #[test]
    fn estop_zeroes_the_setpoint_everywhere() {
        let mut bench = connected_demo_bench();
        let d = &mut bench.drives[0];
        d.send(Command::SetMode(ControlMode::Speed)).unwrap();
        d.send(Command::Enable).unwrap();
        d.send(Command::SetSetpoint(ControlMode::Speed, 3000.0)).unwrap();
        pump_until(&mut bench, "running", |b| {
            b.drives[0].state == DriveState::Enabled
                && b.drives[0]
                    .telemetry()
                    .series("speed_rpm")
                    .and_then(|s| s.last())
                    .is_some_and(|(_, v)| v > 2000.0)
        });
        bench.estop_all();
        assert_eq!(bench.drives[0].setpoint, 0.0, "the local setpoint follows at once");
        // Pretend the local copy were stale: the drive's own report must correct it.
        bench.drives[0].setpoint = 3000.0;
        pump_until(&mut bench, "the drive reports its zeroed setpoint", |b| {
            b.drives[0].state == DriveState::Idle && b.drives[0].setpoint == 0.0
        });
    }

    #[test]
    fn project_params_are_written_on_connect_and_user_writes_are_kept() {
        let mut project = Project::demo();
        project.drives[0].params.insert("speed_kp".into(), 0.0123);
        let mut bench = Bench::new(&project, None);
        bench.connect(0);
        pump_until(&mut bench, "param restore", |b| b.drives[0].values.get("speed_kp") == Some(&0.0123));
        // The drive's old value, read on connect, must not replace the project's own.
        bench.pump(Duration::from_millis(50));
        assert_eq!(bench.to_project(&project).drives[0].params.get("speed_kp"), Some(&0.0123));
        bench.drives[0].send(Command::WriteParam("speed_ki".into(), 0.1)).unwrap();
        pump_until(&mut bench, "param write", |b| b.drives[0].config.params.get("speed_ki") == Some(&0.1));
        let saved = bench.to_project(&project);
        assert_eq!(saved.drives[0].params.get("speed_ki"), Some(&0.1));
        assert!(bench.drives[0].send(Command::WriteParam("no_such_param".into(), 1.0)).is_err());
    }
}
