//! Headless bench runs (`drivebench record`): the same bench, workers and limit checks as
//! the GUI, recording every sample to CSV.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::bench::{Bench, CommandError, DriveRuntime};
use crate::drive::{Command, ControlMode, DriveState, format_significant};
use crate::project::Project;
use crate::telemetry::RecordError;

/// How long drives may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub seconds: f64,
    pub csv: PathBuf,
    pub enable: bool,
    pub mode: Option<ControlMode>,
    pub setpoint: Option<f64>,
    /// Seconds after the start of recording at which the setpoint is applied.
    pub step_at_s: f64,
}

#[derive(Debug, Error)]
pub enum HeadlessError {
    #[error("nothing to record: give a project file or at least one --drive")]
    NoDrives,
    #[error("--seconds must be a positive number, got {0}")]
    BadDuration(f64),
    #[error("drive `{drive}` did not connect within {timeout_s} s (state: {state})")]
    ConnectTimeout { drive: String, timeout_s: u64, state: String },
    #[error("drive `{drive}` did not connect: {state}")]
    ConnectFailed { drive: String, state: String },
    #[error("drive `{drive}`: {error}")]
    Command { drive: String, error: CommandError },
    #[error("cannot create {path}: {source}")]
    CreateCsv { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("the run finished with problems (the CSV holds everything received):\n{0}")]
    Failed(String),
}

/// What a run produced, per drive.
#[derive(Debug, Clone)]
pub struct DriveSummary {
    pub name: String,
    pub rows: u64,
    pub dropped: u64,
    pub state: DriveState,
}

/// Runs the bench for `opts.seconds`, writes the CSV, disables every drive before returning.
/// Samples are written by the same recorder thread as the GUI's Record button.
pub fn record(project: &Project, opts: &RecordOptions) -> Result<Vec<DriveSummary>, HeadlessError> {
    if project.drives.is_empty() {
        return Err(HeadlessError::NoDrives);
    }
    if !(opts.seconds.is_finite() && opts.seconds > 0.0) {
        return Err(HeadlessError::BadDuration(opts.seconds));
    }
    // Refuse a setpoint outside any drive's limits before anything moves.
    if let Some(sp) = opts.setpoint {
        for d in &project.drives {
            let mode = opts.mode.unwrap_or(d.mode);
            d.limits.check_setpoint(mode, sp).map_err(|e| HeadlessError::Command {
                drive: d.name.clone(),
                error: CommandError::Limit(e),
            })?;
        }
    }
    // Fail on an unwritable path before connecting anything.
    File::create(&opts.csv).map_err(|source| HeadlessError::CreateCsv { path: opts.csv.clone(), source })?;

    let mut bench = Bench::new(project, None);
    bench.connect_all();
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        bench.pump(Duration::from_millis(20));
        // Connected, announced, and any drive-side limit above the project envelope lowered.
        if bench
            .drives
            .iter()
            .all(|d| d.state.is_connected() && !d.signals.is_empty() && d.envelope_violation().is_none())
        {
            break;
        }
        // A drive that failed to open (no port, busy, no permission) will not come: say so now.
        if let Some(d) =
            bench.drives.iter().find(|d| matches!(d.state, DriveState::Fault(_)) && d.signals.is_empty())
        {
            return Err(HeadlessError::ConnectFailed { drive: d.name().to_owned(), state: d.state.label() });
        }
        if Instant::now() >= deadline {
            let d = bench
                .drives
                .iter()
                .find(|d| !d.state.is_connected() || d.envelope_violation().is_some())
                .unwrap_or(&bench.drives[0]);
            let state = match d.envelope_violation() {
                Some(why) if d.state.is_connected() => format!("{}; {why}", d.state.label()),
                _ => d.state.label(),
            };
            return Err(HeadlessError::ConnectTimeout {
                drive: d.name().to_owned(),
                timeout_s: CONNECT_TIMEOUT.as_secs(),
                state,
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    bench.start_recording(&opts.csv)?;
    let result = run_steps(&mut bench, opts);
    // Whatever happened: disable every drive, let what is in flight arrive, close the file.
    bench.disable_all();
    let settle = Instant::now() + Duration::from_millis(100);
    while Instant::now() < settle {
        bench.pump(Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    let recorded = bench.stop_recording().unwrap_or(Err(RecordError::Stopped));
    let rows = |name: &str| -> u64 {
        let Ok(r) = &recorded else { return 0 };
        r.rows_per_drive.iter().find(|(n, _)| n == name).map_or(0, |(_, rows)| *rows)
    };
    let summaries: Vec<DriveSummary> = bench
        .drives
        .iter()
        .map(|d| DriveSummary {
            name: d.name().to_owned(),
            rows: rows(d.name()),
            dropped: d.dropped,
            state: d.state.clone(),
        })
        .collect();
    let link_losses: Vec<(String, Vec<(f64, String)>)> = bench
        .drives
        .iter()
        .filter(|d| !d.link_losses.is_empty())
        .map(|d| (d.name().to_owned(), d.link_losses.clone()))
        .collect();
    for d in &mut bench.drives {
        d.disconnect();
    }
    result?;
    let recorded = recorded?;
    let mut problems: Vec<String> = summaries
        .iter()
        .filter_map(|s| match &s.state {
            DriveState::Fault(t) => Some(format!("drive `{}` faulted: {t}", s.name)),
            _ if s.dropped > 0 => Some(format!("drive `{}` lost {} samples", s.name, s.dropped)),
            _ => None,
        })
        .collect();
    // A lost link is reported even if the drive came back: its samples have a gap.
    for (name, losses) in &link_losses {
        let times: Vec<String> = losses.iter().map(|(t, why)| format!("t = {t:.1} s ({why})")).collect();
        problems.push(format!("drive `{name}` lost its link at {}", times.join(", ")));
    }
    if recorded.lost > 0 {
        problems.push(format!("the recorder could not keep up: {} samples lost", recorded.lost));
    }
    if recorded.unrecorded > 0 {
        eprintln!(
            "note: {} samples of signals announced after the start have no column",
            recorded.unrecorded
        );
    }
    if recorded.late_rows > 0 {
        eprintln!("note: {} rows of a drive that stalled were written after newer rows", recorded.late_rows);
    }
    if !problems.is_empty() {
        return Err(HeadlessError::Failed(problems.join("\n")));
    }
    Ok(summaries)
}

fn run_steps(bench: &mut Bench, opts: &RecordOptions) -> Result<(), HeadlessError> {
    // Sends one command per drive, built from that drive (its mode may differ).
    // Telemetry-only drives (Serial Plotter) are recorded but not commanded.
    for d in bench.drives.iter().filter(|d| !d.can_control()) {
        if opts.enable || opts.mode.is_some() || opts.setpoint.is_some() {
            eprintln!("note: drive `{}` is telemetry only; it is recorded but not commanded", d.name());
        }
    }
    let send_all = |bench: &mut Bench, cmd: &dyn Fn(&DriveRuntime) -> Command| -> Result<(), HeadlessError> {
        for d in bench.drives.iter_mut().filter(|d| d.can_control()) {
            d.send(cmd(d)).map_err(|error| HeadlessError::Command { drive: d.name().to_owned(), error })?;
        }
        Ok(())
    };
    if let Some(mode) = opts.mode {
        send_all(bench, &|_| Command::SetMode(mode))?;
    }
    if opts.enable {
        send_all(bench, &|_| Command::Enable)?;
    }
    let start = Instant::now();
    let mut setpoint = opts.setpoint;
    loop {
        let elapsed = start.elapsed().as_secs_f64();
        if let Some(sp) = setpoint
            && elapsed >= opts.step_at_s
        {
            send_all(bench, &|d| Command::SetSetpoint(d.mode, sp))?;
            setpoint = None;
        }
        bench.pump(Duration::from_millis(20));
        if let Some(e) = bench.recording().and_then(|r| r.stats().error()) {
            return Err(HeadlessError::Failed(e));
        }
        if elapsed >= opts.seconds {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// What `drivebench params` does, in order: writes, then reads.
#[derive(Debug, Clone, Default)]
pub struct ParamOptions {
    pub list: bool,
    pub gets: Vec<String>,
    pub sets: Vec<(String, f64)>,
}

/// One `KEY = VALUE UNIT` line of `drivebench params`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamLine {
    pub key: String,
    pub value: Option<f64>,
    pub unit: String,
    /// Label, range and access, for `--list`.
    pub note: Option<String>,
}

impl std::fmt::Display for ParamLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.value {
            Some(v) => write!(f, "{} = {}", self.key, format_significant(v, 9))?,
            None => write!(f, "{} = ?", self.key)?,
        }
        if !self.unit.is_empty() {
            write!(f, " {}", self.unit)?;
        }
        if let Some(note) = &self.note {
            write!(f, "  # {note}")?;
        }
        Ok(())
    }
}

/// How long one parameter read or write may take.
const PARAM_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum ParamsError {
    #[error("drive `{drive}` did not connect within {timeout_s} s (state: {state})")]
    ConnectTimeout { drive: String, timeout_s: u64, state: String },
    #[error("{key}: {reason}")]
    Refused { key: String, reason: String },
    #[error("{key}: the drive did not answer within {timeout_s} s")]
    Timeout { key: String, timeout_s: u64 },
    #[error("the drive was lost: {0}")]
    Lost(String),
    #[error("drive `{drive}` has no parameters drivebench can read or write{note}")]
    NoParams { drive: String, note: String },
}

/// Connects one drive, applies `--set`s (each checked against the project limits and the
/// catalogue before anything is sent, then confirmed by the drive), then reads `--get`s
/// (or, with `list`, the whole catalogue). The drive is disabled and closed afterwards.
pub fn params(
    config: &crate::project::DriveConfig,
    opts: &ParamOptions,
) -> Result<Vec<ParamLine>, ParamsError> {
    let project = Project { drives: vec![config.clone()], ..Project::default() };
    let mut bench = Bench::new(&project, None);
    bench.connect_all();
    let result = params_on(&mut bench, opts);
    bench.disable_all();
    pump_for(&mut bench, Duration::from_millis(50));
    for d in &mut bench.drives {
        d.disconnect();
    }
    result
}

fn pump_for(bench: &mut Bench, wait: Duration) {
    let end = Instant::now() + wait;
    loop {
        bench.pump(Duration::from_millis(10));
        if Instant::now() >= end {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Pumps until `done` holds for the drive, or fails with what the drive said.
fn wait_for(
    bench: &mut Bench,
    key: &str,
    mut done: impl FnMut(&DriveRuntime) -> Option<Result<(), String>>,
) -> Result<(), ParamsError> {
    let deadline = Instant::now() + PARAM_TIMEOUT;
    loop {
        bench.pump(Duration::from_millis(10));
        let d = &bench.drives[0];
        if let Some(outcome) = done(d) {
            return outcome.map_err(|reason| ParamsError::Refused { key: key.to_owned(), reason });
        }
        if !d.is_running() || matches!(d.state, DriveState::Fault(_)) && !d.state.is_connected() {
            return Err(ParamsError::Lost(d.state.label()));
        }
        if Instant::now() >= deadline {
            return Err(ParamsError::Timeout { key: key.to_owned(), timeout_s: PARAM_TIMEOUT.as_secs() });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A message the drive sent about `key` after `since` messages, if any.
fn message_about(d: &DriveRuntime, since: usize, key: &str) -> Option<String> {
    d.messages.iter().skip(since).map(|(_, m)| m).find(|m| m.contains(key)).cloned()
}

fn params_on(bench: &mut Bench, opts: &ParamOptions) -> Result<Vec<ParamLine>, ParamsError> {
    // Connected, catalogue announced, and every readable entry read once.
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        bench.pump(Duration::from_millis(10));
        let d = &bench.drives[0];
        let all_read = d.catalogue.iter().all(|p| d.values.contains_key(&p.key));
        if d.state.is_connected() && !d.catalogue.is_empty() && all_read {
            break;
        }
        if let DriveState::Fault(text) = &d.state
            && (!d.is_running() || d.catalogue.is_empty())
        {
            return Err(ParamsError::Lost(text.clone()));
        }
        // The catalogue comes before the Idle state: an empty one now stays empty.
        if matches!(d.state, DriveState::Idle | DriveState::Enabled) && d.catalogue.is_empty() {
            let note = d.params_note().map(|n| format!(": {n}")).unwrap_or_default();
            return Err(ParamsError::NoParams { drive: d.name().to_owned(), note });
        }
        if Instant::now() >= deadline {
            let state = if d.state.is_connected() && d.catalogue.is_empty() {
                "connected, but this protocol has no parameters".to_owned()
            } else if d.state.is_connected() {
                let missing: Vec<&str> = d
                    .catalogue
                    .iter()
                    .filter(|p| !d.values.contains_key(&p.key))
                    .map(|p| p.key.as_str())
                    .collect();
                format!("connected, no answer for {}", missing.join(", "))
            } else {
                d.state.label()
            };
            return Err(ParamsError::ConnectTimeout {
                drive: d.name().to_owned(),
                timeout_s: CONNECT_TIMEOUT.as_secs(),
                state,
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut lines = Vec::new();
    for (key, value) in &opts.sets {
        let d = &mut bench.drives[0];
        let since = d.messages.len();
        d.config.params.remove(key);
        // Checked against the catalogue and the project limits here; a refusal sends nothing.
        d.send(Command::WriteParam(key.clone(), *value))
            .map_err(|e| ParamsError::Refused { key: key.clone(), reason: e.to_string() })?;
        wait_for(bench, key, |d| {
            if d.config.params.contains_key(key) {
                Some(Ok(()))
            } else {
                message_about(d, since, key).map(Err)
            }
        })?;
        let d = &bench.drives[0];
        lines.push(line_for(d, key, false));
    }
    let keys: Vec<String> = if opts.list {
        bench.drives[0].catalogue.iter().map(|p| p.key.clone()).collect()
    } else {
        opts.gets.clone()
    };
    for key in keys {
        let d = &mut bench.drives[0];
        if d.param_spec(&key).is_none() {
            let known: Vec<&str> = d.catalogue.iter().map(|p| p.key.as_str()).collect();
            return Err(ParamsError::Refused {
                key,
                reason: format!("not in this drive's catalogue (known: {})", known.join(", ")),
            });
        }
        if !opts.list {
            let since = d.messages.len();
            d.values.remove(&key);
            d.send(Command::ReadParam(key.clone()))
                .map_err(|e| ParamsError::Refused { key: key.clone(), reason: e.to_string() })?;
            wait_for(bench, &key, |d| {
                if d.values.contains_key(&key) {
                    Some(Ok(()))
                } else {
                    message_about(d, since, &key).map(Err)
                }
            })?;
        }
        lines.push(line_for(&bench.drives[0], &key, opts.list));
    }
    Ok(lines)
}

fn line_for(d: &DriveRuntime, key: &str, with_note: bool) -> ParamLine {
    let spec = d.param_spec(key);
    ParamLine {
        key: key.to_owned(),
        value: d.values.get(key).copied(),
        unit: spec.map(|s| s.unit.clone()).unwrap_or_default(),
        note: spec.filter(|_| with_note).map(|s| {
            let access = if s.read_only { ", read-only" } else { "" };
            format!("{}; {} … {}{access}", s.label, s.min, s.max)
        }),
    }
}
