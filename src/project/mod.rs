//! The project file: a versioned RON description of the bench (drives, their connections,
//! limits and parameters, the plot layout, history capacity), with atomic save and load
//! errors that name the line and column.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::drive::{ControlMode, Limits};
use crate::link::SerialSettings;
use crate::protocol::Protocol;
use crate::sim::SimConfig;

mod autosave;
mod migrate;
mod spec;
pub use autosave::{Autosave, autosave_path};
pub use migrate::Migration;
pub use spec::{SpecError, parse_drive_spec};

/// The file format version this build writes. Older versions are read through an explicit
/// migration (`migrate.rs`); version 1 is the only older one.
pub const PROJECT_VERSION: u32 = 2;

/// Files larger than this are refused before parsing: a bench description is a few kB.
pub const MAX_PROJECT_BYTES: u64 = 16 * 1024 * 1024;

/// The bench description. Runtime state (threads, channels, telemetry) lives elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Project {
    pub version: u32,
    pub drives: Vec<DriveConfig>,
    pub plot: PlotLayout,
    pub history: History,
}

impl Default for Project {
    fn default() -> Self {
        Project {
            version: PROJECT_VERSION,
            drives: Vec::new(),
            plot: PlotLayout::default(),
            history: History::default(),
        }
    }
}

/// One drive on the bench.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriveConfig {
    pub name: String,
    pub connection: Connection,
    pub limits: Limits,
    /// Parameter values written to the drive on connect (after the limit checks).
    pub params: BTreeMap<String, f64>,
    /// Mode selected on connect.
    pub mode: ControlMode,
    /// A lost link is retried by itself, with growing pauses (otherwise only by the
    /// Reconnect button). Written only when off.
    #[serde(skip_serializing_if = "is_true")]
    pub auto_reconnect: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for DriveConfig {
    fn default() -> Self {
        DriveConfig {
            name: "drive1".into(),
            connection: Connection::Simulated(SimConfig::default()),
            limits: Limits::default(),
            params: BTreeMap::new(),
            mode: ControlMode::Speed,
            auto_reconnect: true,
        }
    }
}

/// How drivebench reaches a drive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Connections are project data, cloned only on connect: boxing the simulator's settings
// would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Connection {
    /// The built-in simulated motor and drive.
    Simulated(SimConfig),
    /// A drive on a serial port speaking one of the supported protocols.
    Serial(SerialConnection),
}

/// A serial port and the protocol spoken on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SerialConnection {
    pub link: SerialSettings,
    pub protocol: Protocol,
}

impl Connection {
    pub fn describe(&self) -> String {
        match self {
            Connection::Simulated(cfg) => format!("simulated (seed {})", cfg.seed),
            Connection::Serial(s) => {
                format!("{} on {} @ {} {}", s.protocol.label(), s.link.port, s.link.baud, s.link.framing())
            }
        }
    }

    /// The serial connection, if this is one.
    pub fn serial(&self) -> Option<&SerialConnection> {
        match self {
            Connection::Serial(s) => Some(s),
            Connection::Simulated(_) => None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            Connection::Simulated(_) => Ok(()),
            Connection::Serial(s) => {
                s.link.validate()?;
                s.protocol.validate()
            }
        }
    }
}

/// What the plots show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlotLayout {
    /// Width of the follow window in seconds.
    pub window_s: f64,
    /// Stacked plots sharing one time axis.
    pub plots: Vec<PlotConfig>,
    /// Traces switched off in the legend, as `DRIVE.SIGNAL`.
    pub hidden: BTreeSet<String>,
    /// The scope trigger as last set up (it is armed by hand, never on load).
    #[serde(skip_serializing_if = "TriggerSettings::is_default")]
    pub trigger: TriggerSettings,
}

impl Default for PlotLayout {
    fn default() -> Self {
        PlotLayout {
            window_s: 10.0,
            plots: vec![
                PlotConfig::new("Speed", "rpm", vec!["speed_rpm".into(), "speed_setpoint_rpm".into()]),
                PlotConfig::new("Current", "A", vec!["current_a".into(), "current_setpoint_a".into()]),
            ],
            hidden: BTreeSet::new(),
            trigger: TriggerSettings::default(),
        }
    }
}

/// One plot of the stack: which signals of every drive it draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlotConfig {
    pub title: String,
    /// Unit of the left (main) value axis.
    pub unit: String,
    pub signals: Vec<String>,
    /// Those of `signals` drawn against a second value axis on the right (e.g. speed in rpm
    /// next to current in A).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub right_signals: Vec<String>,
}

impl Default for PlotConfig {
    fn default() -> Self {
        PlotConfig {
            title: "Plot".into(),
            unit: String::new(),
            signals: Vec::new(),
            right_signals: Vec::new(),
        }
    }
}

impl PlotConfig {
    /// A plot of `signals`, all on the left axis.
    pub fn new(title: &str, unit: &str, signals: Vec<String>) -> Self {
        PlotConfig { title: title.into(), unit: unit.into(), signals, right_signals: Vec::new() }
    }

    /// True if `signal` is drawn against the right axis.
    pub fn on_right(&self, signal: &str) -> bool {
        self.right_signals.iter().any(|s| s == signal)
    }
}

/// Which way a signal must pass the trigger level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TriggerEdge {
    #[default]
    Rising,
    Falling,
    Either,
}

/// What the trigger does after a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TriggerMode {
    /// One capture, then disarmed.
    #[default]
    Single,
    /// Re-armed after each capture; the next crossing replaces the capture.
    Normal,
}

/// The scope trigger: a level crossing on one signal of one drive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TriggerSettings {
    /// `DRIVE.SIGNAL`; empty until one is chosen.
    pub source: String,
    /// In the source signal's unit.
    pub level: f64,
    pub edge: TriggerEdge,
    pub mode: TriggerMode,
    /// Share of the window shown before the trigger time, 0 … 1.
    pub pre_trigger: f64,
}

impl Default for TriggerSettings {
    fn default() -> Self {
        TriggerSettings {
            source: String::new(),
            level: 0.0,
            edge: TriggerEdge::Rising,
            mode: TriggerMode::Single,
            pre_trigger: 0.25,
        }
    }
}

impl TriggerSettings {
    fn is_default(&self) -> bool {
        *self == TriggerSettings::default()
    }
}

/// How much telemetry the live store keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct History {
    /// Raw samples kept per signal (e.g. 300 000 = 5 min at 1 kHz).
    pub samples_per_signal: usize,
}

impl Default for History {
    fn default() -> Self {
        History { samples_per_signal: 300_000 }
    }
}

impl History {
    pub const MIN_SAMPLES: usize = 1_000;
    pub const MAX_SAMPLES: usize = 100_000_000;
}

/// Why a project could not be loaded or saved.
#[derive(Debug, Error)]
pub enum ProjectError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is {size} bytes; a project file is at most {max} bytes — is this the right file?")]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("{path}:{line}:{col}: not UTF-8 text (byte {offset}): a project file is RON text")]
    NotText { path: PathBuf, offset: usize, line: usize, col: usize },
    #[error("{path}:{line}:{col}: {message}")]
    Syntax { path: PathBuf, line: usize, col: usize, message: String },
    #[error(
        "{path}: project version {found} is not supported by this drivebench (it reads version {supported}); \
         open it with a newer drivebench"
    )]
    UnknownVersion { path: PathBuf, found: u32, supported: u32 },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot serialise the project: {0}")]
    Serialise(String),
}

impl ProjectError {
    /// Line and column of a syntax error, if the error has one.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            ProjectError::Syntax { line, col, .. } | ProjectError::NotText { line, col, .. } => {
                Some((*line, *col))
            }
            _ => None,
        }
    }
}

/// A RON error at its position in `path`.
fn syntax_error(path: &Path, e: ron::error::SpannedError) -> ProjectError {
    ProjectError::Syntax {
        path: path.to_owned(),
        line: e.span.start.line,
        col: e.span.start.col,
        message: e.code.to_string(),
    }
}

/// Where [`Project::save`] keeps the previous version of `path`: `NAME.ron.bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".bak");
    path.with_file_name(name)
}

/// Reads only the version, so an unknown version is reported as such and not as a schema error.
#[derive(Deserialize)]
#[serde(rename = "Project")]
struct VersionProbe {
    /// 0 when the field is missing; real versions start at 1.
    #[serde(default)]
    version: u32,
}

impl Project {
    /// The demo bench: two simulated drives with different motors.
    pub fn demo() -> Self {
        let mut alt = SimConfig::alternative();
        alt.seed = 2;
        Project {
            drives: vec![
                DriveConfig {
                    name: "left".into(),
                    connection: Connection::Simulated(SimConfig { seed: 1, ..SimConfig::default() }),
                    ..DriveConfig::default()
                },
                DriveConfig {
                    name: "right".into(),
                    connection: Connection::Simulated(alt),
                    limits: Limits { max_current_a: 12.0, max_speed_rpm: 3000.0, ..Limits::default() },
                    ..DriveConfig::default()
                },
            ],
            ..Project::default()
        }
    }

    /// Parses RON text. `path` only names the source in errors.
    pub fn from_ron(text: &str, path: &Path) -> Result<Project, ProjectError> {
        Project::from_ron_noting(text, path).map(|(project, _)| project)
    }

    /// Parses RON text of the current or an older format version; says what an older one
    /// needed converting.
    pub fn from_ron_noting(text: &str, path: &Path) -> Result<(Project, Option<Migration>), ProjectError> {
        let probe: VersionProbe =
            ron::Options::default().from_str(text).map_err(|e| syntax_error(path, e))?;
        let (project, migration) = match probe.version {
            PROJECT_VERSION => {
                let project: Project =
                    ron::Options::default().from_str(text).map_err(|e| syntax_error(path, e))?;
                (project, None)
            }
            0 => {
                return Err(ProjectError::Invalid {
                    path: path.to_owned(),
                    message: "the file has no `version` field; is it a drivebench project?".into(),
                });
            }
            found if found > PROJECT_VERSION => {
                return Err(ProjectError::UnknownVersion {
                    path: path.to_owned(),
                    found,
                    supported: PROJECT_VERSION,
                });
            }
            old => {
                let (project, migration) = migrate::from_old(text, old, path)?;
                (project, Some(migration))
            }
        };
        project.validate().map_err(|message| ProjectError::Invalid { path: path.to_owned(), message })?;
        Ok((project, migration))
    }

    /// Loads a project file. On any error nothing is returned, so the caller's bench is untouched.
    pub fn load(path: &Path) -> Result<Project, ProjectError> {
        Project::load_noting(path).map(|(project, _)| project)
    }

    /// [`Project::load`], also saying what a file of an older format version needed converting.
    pub fn load_noting(path: &Path) -> Result<(Project, Option<Migration>), ProjectError> {
        let read_err = |source| ProjectError::Read { path: path.to_owned(), source };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.len() > MAX_PROJECT_BYTES {
            return Err(ProjectError::TooLarge {
                path: path.to_owned(),
                size: meta.len(),
                max: MAX_PROJECT_BYTES,
            });
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let offset = e.utf8_error().valid_up_to();
            let before = &e.as_bytes()[..offset];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let col = offset - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
            ProjectError::NotText { path: path.to_owned(), offset, line, col }
        })?;
        Project::from_ron_noting(&text, path)
    }

    pub fn to_ron(&self) -> Result<String, ProjectError> {
        let pretty = ron::ser::PrettyConfig::new().depth_limit(6).struct_names(true);
        ron::ser::to_string_pretty(self, pretty).map_err(|e| ProjectError::Serialise(e.to_string()))
    }

    /// Saves atomically: the text goes to a temporary file in the same directory, is synced,
    /// then renamed over the target, so a crash leaves either the old or the new file. The
    /// previous file is kept as `NAME.ron.bak`.
    pub fn save(&self, path: &Path) -> Result<(), ProjectError> {
        let text = self.to_ron()?;
        let write_err = |source| ProjectError::Write { path: path.to_owned(), source };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            if path.is_file() {
                std::fs::copy(path, backup_path(path))?;
            }
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        Ok(())
    }

    /// Checks what serde cannot: names, limits and capacities that make sense.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = BTreeSet::new();
        for (i, d) in self.drives.iter().enumerate() {
            if d.name.trim().is_empty() {
                return Err(format!("drive {} has an empty name", i + 1));
            }
            if d.name.contains(['.', ',']) {
                return Err(format!("drive name `{}` may not contain `.` or `,`", d.name));
            }
            if !names.insert(d.name.as_str()) {
                return Err(format!("two drives are named `{}`", d.name));
            }
            let l = &d.limits;
            let positive = |v: f64| v.is_finite() && v > 0.0;
            if !positive(l.max_current_a) || !positive(l.max_speed_rpm) {
                return Err(format!("drive `{}`: current and speed limits must be positive numbers", d.name));
            }
            if !(l.min_position_rev.is_finite() && l.max_position_rev.is_finite())
                || l.min_position_rev >= l.max_position_rev
            {
                return Err(format!("drive `{}`: min_position_rev must be below max_position_rev", d.name));
            }
            d.connection.validate().map_err(|e| format!("drive `{}`: {e}", d.name))?;
            if let Some(s) = d.connection.serial()
                && let Some(other) = self.drives[..i]
                    .iter()
                    .find(|o| o.connection.serial().is_some_and(|os| os.link.port == s.link.port))
            {
                return Err(format!(
                    "drives `{}` and `{}` both use {}: one port carries one drive",
                    other.name, d.name, s.link.port
                ));
            }
            if let Some((k, v)) = d.params.iter().find(|(_, v)| !v.is_finite()) {
                return Err(format!("drive `{}`: parameter {k} = {v} is not a finite number", d.name));
            }
        }
        let cap = self.history.samples_per_signal;
        if !(History::MIN_SAMPLES..=History::MAX_SAMPLES).contains(&cap) {
            return Err(format!(
                "history.samples_per_signal = {cap} is outside {} … {}",
                History::MIN_SAMPLES,
                History::MAX_SAMPLES
            ));
        }
        if !(self.plot.window_s.is_finite() && self.plot.window_s > 0.0) {
            return Err("plot.window_s must be a positive number of seconds".into());
        }
        let trigger = &self.plot.trigger;
        if !(0.0..=1.0).contains(&trigger.pre_trigger) {
            return Err("plot.trigger.pre_trigger must be between 0 and 1 (a share of the window)".into());
        }
        if !trigger.level.is_finite() {
            return Err("plot.trigger.level must be a finite number".into());
        }
        Ok(())
    }

    /// A drive name not yet used on this bench (`drive1`, `drive2`, …).
    pub fn free_drive_name(&self) -> String {
        (1..)
            .map(|i| format!("drive{i}"))
            .find(|n| self.drives.iter().all(|d| &d.name != n))
            .unwrap_or_else(|| "drive".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_round_trips_through_ron() {
        let demo = Project::demo();
        let text = demo.to_ron().unwrap();
        let back = Project::from_ron(&text, Path::new("demo.ron")).unwrap();
        assert_eq!(demo, back);
        assert_eq!(back.drives.len(), 2);
        assert_ne!(back.drives[0].connection, back.drives[1].connection);
    }

    #[test]
    fn second_axis_and_trigger_round_trip_and_older_files_without_them_load() {
        let mut p = Project::demo();
        p.plot.plots[0].signals.push("current_a".into());
        p.plot.plots[0].right_signals.push("current_a".into());
        p.plot.trigger = TriggerSettings {
            source: "left.speed_rpm".into(),
            level: 500.0,
            edge: TriggerEdge::Falling,
            mode: TriggerMode::Normal,
            pre_trigger: 0.4,
        };
        let text = p.to_ron().unwrap();
        assert!(text.contains("right_signals") && text.contains("Falling"), "{text}");
        assert_eq!(Project::from_ron(&text, Path::new("x.ron")).unwrap(), p);

        // A file written before these fields existed: defaults, and nothing new is written.
        let old = Project::demo().to_ron().unwrap();
        assert!(!old.contains("right_signals") && !old.contains("trigger"), "{old}");
        let back = Project::from_ron(&old, Path::new("old.ron")).unwrap();
        assert!(back.plot.plots.iter().all(|pc| pc.right_signals.is_empty()));
        assert_eq!(back.plot.trigger, TriggerSettings::default());

        p.plot.trigger.pre_trigger = 1.5;
        let err = Project::from_ron(&p.to_ron().unwrap(), Path::new("x.ron")).unwrap_err();
        assert!(err.to_string().contains("pre_trigger"), "{err}");
    }

    #[test]
    fn save_is_atomic_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.ron");
        std::fs::write(&path, "old contents").unwrap();
        let mut p = Project::demo();
        p.drives[0].params.insert("speed_kp".into(), 0.02);
        p.save(&path).unwrap();
        assert_eq!(Project::load(&path).unwrap(), p);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["bench.ron", "bench.ron.bak"], "temporary file left behind");
        // The previous file is the backup; a second save backs up the first.
        assert_eq!(std::fs::read_to_string(backup_path(&path)).unwrap(), "old contents");
        p.save(&path).unwrap();
        assert_eq!(Project::load(&backup_path(&path)).unwrap(), p);
    }

    #[test]
    fn truncated_wrong_type_and_huge_files_are_refused_with_the_place() {
        let full = Project::demo().to_ron().unwrap();
        let cut = &full[..full.len() / 2];
        let err = Project::from_ron(cut, Path::new("cut.ron")).unwrap_err();
        assert!(err.position().is_some(), "{err}");
        let wrong = full.replacen("max_current_a: 8.0", "max_current_a: \"eight\"", 1);
        assert_ne!(wrong, full);
        let err = Project::from_ron(&wrong, Path::new("wrong.ron")).unwrap_err();
        let (line, _) = err.position().expect("position");
        assert_eq!(
            full.lines().nth(line - 1).map(|l| l.trim_start().starts_with("max_current_a")),
            Some(true),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let huge = dir.path().join("huge.ron");
        let f = std::fs::File::create(&huge).unwrap();
        f.set_len(60 * 1024 * 1024).unwrap();
        let err = Project::load(&huge).unwrap_err();
        assert!(matches!(err, ProjectError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("is 62914560 bytes"), "{err}");
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let text = "Project(\n    version: 2,\n    drives: [oops],\n)";
        let err = Project::from_ron(text, Path::new("bad.ron")).unwrap_err();
        let (line, col) = err.position().expect("position");
        assert_eq!(line, 3, "{err}");
        assert!(col > 1, "{err}");
        assert!(err.to_string().starts_with("bad.ron:3:"), "{err}");
    }

    #[test]
    fn a_version_1_file_loads_through_its_migration() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/project-v1.ron");
        let (p, migration) = Project::load_noting(&path).unwrap();
        let migration = migration.expect("a version 1 file is converted");
        assert_eq!(migration.from, 1);
        assert!(migration.to_string().contains("converted to version 2"), "{migration}");
        assert!(migration.notes.iter().any(|n| n.contains("auto_reconnect")), "{migration:?}");
        assert_eq!(p.version, PROJECT_VERSION);
        // Everything version 1 said is kept.
        assert_eq!(p.drives.len(), 2);
        let (left, odrive) = (&p.drives[0], &p.drives[1]);
        assert_eq!(left.limits.max_speed_rpm, 2500.0);
        assert_eq!(left.params.get("speed_kp"), Some(&0.02));
        assert_eq!(odrive.mode, ControlMode::Current);
        assert_eq!(odrive.connection.serial().unwrap().link.port, "/dev/ttyACM1");
        assert!(p.drives.iter().all(|d| d.auto_reconnect));
        assert_eq!(p.plot.window_s, 5.0);
        assert_eq!(p.plot.plots[0].right_signals, ["current_a"]);
        assert!(p.plot.hidden.contains("left.current_setpoint_a"));
        assert_eq!(p.plot.trigger.edge, TriggerEdge::Falling);
        assert_eq!(p.history.samples_per_signal, 600_000);
        // Saved, it is a version 2 file that loads without conversion and says the same.
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("bench.ron");
        p.save(&saved).unwrap();
        let text = std::fs::read_to_string(&saved).unwrap();
        assert!(text.contains("version: 2"), "{text}");
        let (again, none) = Project::load_noting(&saved).unwrap();
        assert_eq!((again, none), (p, None));
    }

    #[test]
    fn a_version_1_file_is_checked_by_the_version_1_rules() {
        // `auto_reconnect` came with version 2: in a version 1 file it is an error at its place.
        let text = "Project(\n  version: 1,\n  drives: [DriveConfig(name: \"a\", auto_reconnect: false)],\n)";
        let err = Project::from_ron(text, Path::new("old.ron")).unwrap_err();
        assert_eq!(err.position().map(|(line, _)| line), Some(3), "{err}");
        assert!(err.to_string().contains("auto_reconnect"), "{err}");
        // In version 2 it is fine, and written only when off.
        let text = text.replace("version: 1", "version: 2");
        let (p, migration) = Project::from_ron_noting(&text, Path::new("new.ron")).unwrap();
        assert!(migration.is_none() && !p.drives[0].auto_reconnect);
        assert!(p.to_ron().unwrap().contains("auto_reconnect: false"));
        assert!(!Project::demo().to_ron().unwrap().contains("auto_reconnect"));
    }

    #[test]
    fn unknown_version_is_refused_by_name() {
        let err = Project::from_ron("Project(version: 7, drives: [])", Path::new("new.ron")).unwrap_err();
        assert!(matches!(err, ProjectError::UnknownVersion { found: 7, .. }), "{err}");
        assert!(err.to_string().contains("version 7"));
    }

    #[test]
    fn missing_version_and_bad_values_are_refused() {
        assert!(matches!(
            Project::from_ron("Project(drives: [])", Path::new("x.ron")),
            Err(ProjectError::Invalid { .. })
        ));
        let mut p = Project::demo();
        p.drives[1].name = "left".into();
        let err = Project::from_ron(&p.to_ron().unwrap(), Path::new("x.ron")).unwrap_err();
        assert!(err.to_string().contains("two drives are named `left`"), "{err}");
        let mut p = Project::demo();
        p.drives[0].limits.max_current_a = -1.0;
        assert!(Project::from_ron(&p.to_ron().unwrap(), Path::new("x.ron")).is_err());
    }

    #[test]
    fn a_misspelt_field_is_an_error_not_a_silent_default() {
        let mut text = Project::demo().to_ron().unwrap();
        text = text.replacen("max_current_a", "max_curent_a", 1);
        let err = Project::from_ron(&text, Path::new("typo.ron")).unwrap_err();
        assert!(err.position().is_some(), "{err}");
        assert!(err.to_string().contains("max_curent_a"), "{err}");
    }

    #[test]
    fn non_utf8_and_missing_files_get_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin.ron");
        std::fs::write(&path, b"Project(\n  version: 1, \xff\xfe)").unwrap();
        let err = Project::load(&path).unwrap_err();
        assert!(matches!(err, ProjectError::NotText { offset: 23, line: 2, col: 15, .. }), "{err}");
        assert!(err.to_string().contains("bin.ron:2:15"), "{err}");
        let err = Project::load(&dir.path().join("missing.ron")).unwrap_err();
        assert!(err.to_string().contains("missing.ron"), "{err}");
    }

    #[test]
    fn shipped_demo_project_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("projects/demo.ron");
        let p = Project::load(&path).unwrap();
        assert_eq!(p.drives.len(), 2);
        assert!(p.drives.iter().all(|d| matches!(d.connection, Connection::Simulated(_))));
        assert_eq!(p, Project::demo(), "projects/demo.ron and the built-in demo bench differ");
    }

    #[test]
    fn shipped_serial_examples_load_with_their_protocols() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("projects");
        for (file, protocol) in [
            ("plotter.ron", Protocol::Plotter),
            ("simplefoc.ron", Protocol::SimpleFoc { motor: 'M' }),
            ("odrive.ron", Protocol::ODrive { axis: 0, checksum: false }),
            ("vesc.ron", Protocol::Vesc { pole_pairs: 7 }),
            ("modbus.ron", Protocol::modbus(1)),
        ] {
            let p = Project::load(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let serial = p.drives[0].connection.serial().unwrap_or_else(|| panic!("{file}: not serial"));
            assert_eq!(serial.protocol, protocol, "{file}");
            let line = (protocol.default_baud(), protocol.default_framing());
            assert_eq!((serial.link.baud, serial.link.framing().as_str()), line, "{file}");
            // Saved and loaded again, nothing changes.
            let back = Project::from_ron(&p.to_ron().unwrap(), Path::new(file)).unwrap();
            assert_eq!(back, p, "{file}");
        }
    }

    #[test]
    fn serial_connection_errors_are_reported_and_ports_are_not_shared() {
        let serial = |port: &str| {
            Connection::Serial(SerialConnection {
                link: SerialSettings::new(port, 115_200),
                protocol: Protocol::SimpleFoc { motor: 'M' },
            })
        };
        let mut p = Project::default();
        p.drives.push(DriveConfig {
            name: "a".into(),
            connection: serial("/dev/ttyACM0"),
            ..DriveConfig::default()
        });
        p.drives.push(DriveConfig {
            name: "b".into(),
            connection: serial("/dev/ttyACM0"),
            ..DriveConfig::default()
        });
        let err = p.validate().unwrap_err();
        assert!(err.contains("/dev/ttyACM0") && err.contains("a") && err.contains("b"), "{err}");
        p.drives[1].connection = serial("");
        assert!(p.validate().unwrap_err().contains("no serial port"));
        p.drives[1].connection = Connection::Serial(SerialConnection {
            link: SerialSettings::new("/dev/ttyACM1", 115_200),
            protocol: Protocol::SimpleFoc { motor: '3' },
        });
        assert!(p.validate().unwrap_err().contains("letter"));
    }
}
