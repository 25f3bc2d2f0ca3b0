//! The application: owns the project, the running bench and the panels; drains worker
//! events each frame within a time budget; wires menu actions, shortcuts and the e-stop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use egui::{Color32, Key, KeyboardShortcut, Modifiers, RichText};

use crate::bench::Bench;
use crate::drive::{Command, ControlMode, DriveState};
use crate::project::{Autosave, DriveConfig, Project};
use crate::telemetry::playback::{PlaybackError, RecordedTelemetry, load_recording};
use crate::worker::RepaintFn;

use super::console::ConsolePanel;
use super::control::ControlPanel;
use super::drive_list::{DriveListPanel, ListAction};
use super::files::{FileAction, FileDialogs};
use super::history::HistoryDialog;
use super::params::ParamsPanel;
use super::plots::PlotsPanel;
use super::serial::SerialDialog;
use super::status::StatusBar;

/// Time the UI thread may spend per frame moving worker events into the store.
const PUMP_BUDGET: Duration = Duration::from_millis(8);
/// How often unsaved changes are autosaved.
const AUTOSAVE_INTERVAL: Duration = Duration::from_secs(30);
/// Recent projects remembered across runs.
const MAX_RECENT: usize = 8;

pub const SHORTCUT_ESTOP: KeyboardShortcut = KeyboardShortcut::new(Modifiers::NONE, Key::Escape);
pub const SHORTCUT_NEW: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::N);
pub const SHORTCUT_OPEN: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::O);
pub const SHORTCUT_SAVE: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::S);

/// A recording read on a background thread.
type LoadResult = Result<Vec<RecordedTelemetry>, PlaybackError>;

/// A message in the error window (e.g. a project that failed to load).
#[derive(Debug, Clone)]
pub struct Notice {
    pub title: String,
    pub text: String,
    /// An error (shown in the error colour, the bench untouched) or information.
    pub error: bool,
}

/// Scripted actions of `--screenshot`: enable every drive, step the speed twice, capture.
#[derive(Debug, Clone)]
pub struct DemoScript {
    /// Frames to render at least before the capture.
    pub frames: u64,
    /// Session time at which the drives were enabled.
    pub enabled_at_s: Option<f64>,
}

impl DemoScript {
    pub const FIRST_STEP_S: f64 = 0.8;
    pub const SECOND_STEP_S: f64 = 2.2;
    /// Time after enabling at which the capture may happen.
    pub const CAPTURE_S: f64 = 3.6;
}

/// The whole app, independent of eframe so that tests can drive it with egui_kittest.
pub struct BenchApp {
    pub project: Project,
    pub project_path: Option<PathBuf>,
    pub bench: Bench,
    pub selected: Option<u64>,
    pub recent: Vec<PathBuf>,
    pub notice: Option<Notice>,
    pub drive_list: DriveListPanel,
    pub control: ControlPanel,
    pub params: ParamsPanel,
    pub plots: PlotsPanel,
    pub status: StatusBar,
    pub serial_dialog: SerialDialog,
    pub console: ConsolePanel,
    pub history: HistoryDialog,
    /// The console panel under the plots, for the selected serial drive.
    pub show_console: bool,
    /// Where unsaved changes are autosaved (`None`: no autosave).
    pub autosave_dir: Option<PathBuf>,
    last_autosave: Instant,
    /// An autosave found at start, offered back.
    pub restore_offer: Option<Autosave>,
    /// The About window is open.
    pub show_about: bool,
    /// The quit confirmation is open (drives were enabled when the window was asked to close).
    pub confirm_quit: bool,
    /// The user agreed to quit: the next close request goes through.
    pub quit_approved: bool,
    /// What the last recording wrote (or why it failed), shown beside the Record button.
    pub last_recording: Option<String>,
    /// Recordings being read on a background thread.
    loading: Vec<(PathBuf, Receiver<LoadResult>)>,
    files: FileDialogs,
    repaint: Option<RepaintFn>,
    frame: u64,
    script: Option<DemoScript>,
}

impl BenchApp {
    /// Opens a project and connects its drives. `ctx` wires worker repaints to the UI.
    pub fn new(project: Project, path: Option<PathBuf>, ctx: Option<&egui::Context>) -> Self {
        let repaint: Option<RepaintFn> = ctx.map(|ctx| {
            let ctx = ctx.clone();
            Arc::new(move || ctx.request_repaint_after(Duration::from_millis(16))) as RepaintFn
        });
        let mut bench = Bench::new(&project, repaint.clone());
        bench.connect_all();
        let selected = bench.drives.first().map(|d| d.id);
        let plots = PlotsPanel::new(&project.plot);
        BenchApp {
            project,
            project_path: path,
            bench,
            selected,
            recent: Vec::new(),
            notice: None,
            drive_list: DriveListPanel::default(),
            control: ControlPanel::default(),
            params: ParamsPanel::default(),
            plots,
            status: StatusBar::default(),
            serial_dialog: SerialDialog::default(),
            console: ConsolePanel::default(),
            history: HistoryDialog::default(),
            show_console: true,
            autosave_dir: None,
            last_autosave: Instant::now(),
            restore_offer: None,
            show_about: false,
            confirm_quit: false,
            quit_approved: false,
            last_recording: None,
            loading: Vec::new(),
            files: FileDialogs::default(),
            repaint,
            frame: 0,
            script: None,
        }
    }

    pub fn with_script(mut self, script: DemoScript) -> Self {
        self.script = Some(script);
        self
    }

    /// The project as it would be saved now.
    pub fn current_project(&self) -> Project {
        let mut base = self.project.clone();
        base.plot = self.plots.layout();
        self.bench.to_project(&base)
    }

    /// Replaces the bench with a project: the old drives are disabled and stopped first.
    pub fn open_project(&mut self, project: Project, path: Option<PathBuf>) {
        self.stop_recording();
        self.bench.disable_all();
        // Let the disables go out before the workers are torn down.
        self.bench.pump(Duration::from_millis(20));
        self.bench = Bench::new(&project, self.repaint.clone());
        self.bench.connect_all();
        self.selected = self.bench.drives.first().map(|d| d.id);
        self.plots = PlotsPanel::new(&project.plot);
        self.params = ParamsPanel::default();
        self.control = ControlPanel::default();
        self.project = project;
        if let Some(p) = &path {
            self.remember(p);
        }
        self.project_path = path;
    }

    /// Loads a file through the same path as File ▸ Open. On error the bench is untouched
    /// and the error (with line and column) is shown.
    pub fn open_path(&mut self, path: &Path) -> bool {
        match Project::load_noting(path) {
            Ok((project, migration)) => {
                self.open_project(project, Some(path.to_owned()));
                if let Some(m) = migration {
                    self.show_info("Project converted", format!("{}: {m}", path.display()));
                }
                true
            }
            Err(e) => {
                self.show_notice("Cannot open project", e.to_string());
                false
            }
        }
    }

    /// Saves through the same path as File ▸ Save As.
    pub fn save_to(&mut self, path: &Path) -> bool {
        let project = self.current_project();
        match project.save(path) {
            Ok(()) => {
                self.project = project;
                self.project_path = Some(path.to_owned());
                self.remember(path);
                self.autosave_now();
                true
            }
            Err(e) => {
                self.show_notice("Cannot save project", e.to_string());
                false
            }
        }
    }

    fn remember(&mut self, path: &Path) {
        self.recent.retain(|p| p != path);
        self.recent.insert(0, path.to_owned());
        self.recent.truncate(MAX_RECENT);
    }

    /// Adds a simulated drive with a fresh name and seed, connects and selects it.
    pub fn add_simulated_drive(&mut self) {
        let name = self.current_project().free_drive_name();
        let seed = self.bench.drives.len() as u64 + 1 + self.frame;
        let config = DriveConfig {
            name,
            connection: crate::project::Connection::Simulated(crate::sim::SimConfig {
                seed,
                ..Default::default()
            }),
            ..DriveConfig::default()
        };
        let index = self.bench.add(config);
        self.bench.connect(index);
        self.selected = Some(self.bench.drives[index].id);
    }

    /// Adds a drive on a serial port, connects and selects it.
    pub fn add_serial_drive(&mut self, name: String, connection: crate::project::SerialConnection) {
        let taken = self.bench.drives.iter().any(|d| d.config.name == name);
        let name = if taken { self.current_project().free_drive_name() } else { name };
        let config = DriveConfig {
            name,
            connection: crate::project::Connection::Serial(connection),
            ..DriveConfig::default()
        };
        let index = self.bench.add(config);
        self.bench.connect(index);
        self.selected = Some(self.bench.drives[index].id);
    }

    /// Opens the "Add serial drive" window.
    pub fn open_serial_dialog(&mut self) {
        let name = self.current_project().free_drive_name();
        self.serial_dialog.show_with_name(name);
    }

    /// Where the Record button writes: `recordings/` beside the project file (or in the
    /// working directory), named by the local start time.
    pub fn default_recording_path(&self) -> PathBuf {
        let dir = self
            .project_path
            .as_ref()
            .and_then(|p| p.parent())
            .map_or_else(|| PathBuf::from("recordings"), |p| p.join("recordings"));
        dir.join(recording_file_name(SystemTime::now()))
    }

    /// Starts recording every sample of every live drive to `path` (or the default path).
    pub fn start_recording(&mut self, path: Option<PathBuf>) -> bool {
        let path = path.unwrap_or_else(|| self.default_recording_path());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            self.show_notice("Cannot record", format!("cannot create {}: {e}", dir.display()));
            return false;
        }
        match self.bench.start_recording(&path) {
            Ok(()) => {
                crate::logfile::line("app", &format!("recording to {}", path.display()));
                self.last_recording = None;
                true
            }
            Err(e) => {
                self.show_notice("Cannot record", e.to_string());
                false
            }
        }
    }

    /// Stops the recording, if one runs; the file holds everything received.
    pub fn stop_recording(&mut self) {
        let Some(result) = self.bench.stop_recording() else { return };
        let text = match result {
            Ok(s) => {
                let mut text = format!(
                    "recorded {} rows, {:.1} MB, {:.1} s to {}",
                    s.rows,
                    s.bytes as f64 / 1e6,
                    s.seconds,
                    s.path.display()
                );
                if s.lost > 0 {
                    text.push_str(&format!(" — {} samples LOST (the disk could not keep up)", s.lost));
                }
                if s.unrecorded > 0 {
                    text.push_str(&format!(
                        " — {} samples of signals added during the run have no column",
                        s.unrecorded
                    ));
                }
                text
            }
            Err(e) => {
                self.show_notice("Recording failed", e.to_string());
                format!("recording failed: {e}")
            }
        };
        crate::logfile::line("app", &text);
        self.last_recording = Some(text);
    }

    /// Reads a recording in the background; its drives then appear in the list and the plots
    /// show its whole time span.
    pub fn open_recording(&mut self, path: &Path) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let file = path.to_owned();
        let ctx_repaint = self.repaint.clone();
        let spawned = std::thread::Builder::new().name("open-recording".into()).spawn(move || {
            let _ = tx.send(load_recording(&file));
            if let Some(repaint) = ctx_repaint {
                repaint();
            }
        });
        match spawned {
            Ok(_) => self.loading.push((path.to_owned(), rx)),
            Err(e) => self.show_notice("Cannot open recording", e.to_string()),
        }
    }

    /// True while a recording is being read.
    pub fn is_loading(&self) -> bool {
        !self.loading.is_empty()
    }

    fn poll_loading(&mut self) {
        let mut i = 0;
        while i < self.loading.len() {
            let Ok(result) = self.loading[i].1.try_recv() else {
                i += 1;
                continue;
            };
            let (path, _) = self.loading.remove(i);
            match result {
                Ok(drives) => self.add_recorded(&path, drives),
                Err(e) => self.show_notice("Cannot open recording", e.to_string()),
            }
        }
    }

    fn add_recorded(&mut self, path: &Path, drives: Vec<RecordedTelemetry>) {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mut span: Option<(f64, f64)> = None;
        let mut first = None;
        for d in drives {
            if let Some((a, b)) = d.telemetry.time_span() {
                span = Some(span.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
            }
            let mut name = format!("{} [{stem}]", d.drive);
            while self.bench.drives.iter().any(|x| x.config.name == name) {
                name.push('\'');
            }
            let index = self.bench.add_recorded(name, path, d.telemetry);
            first.get_or_insert(self.bench.drives[index].id);
        }
        if let Some(id) = first {
            self.selected = Some(id);
        }
        // Show the whole recording (the plots pause there; double-click follows again).
        if let Some((t0, t1)) = span {
            let pad = ((t1 - t0) * 0.01).max(1e-3);
            self.plots.show_range(t0 - pad, t1 + pad);
        }
    }

    /// Samples kept per signal: a project setting, applied to the running stores now.
    pub fn set_history_capacity(&mut self, samples: usize) {
        self.bench.set_history_capacity(samples);
        self.project.history.samples_per_signal = samples;
    }

    /// Turns autosave on (into `dir`) and offers back what an earlier session left there.
    pub fn enable_autosave(&mut self, dir: PathBuf) {
        match Autosave::read(&dir) {
            Some(Ok(found)) => self.restore_offer = Some(found),
            Some(Err(e)) => {
                Autosave::remove(&dir);
                self.show_notice("Autosave unreadable", format!("{e} (it was removed)"));
            }
            None => {}
        }
        self.autosave_dir = Some(dir);
    }

    /// True if the bench differs from the project as last opened or saved.
    pub fn has_unsaved_changes(&self) -> bool {
        self.current_project() != self.project
    }

    /// Writes the autosave now if there are unsaved changes, removes it otherwise.
    pub fn autosave_now(&mut self) {
        self.last_autosave = Instant::now();
        let Some(dir) = self.autosave_dir.clone() else { return };
        if self.restore_offer.is_some() {
            // The old autosave stays until the user has decided.
            return;
        }
        if self.has_unsaved_changes() {
            let autosave = Autosave::new(self.current_project(), self.project_path.clone());
            if let Err(e) = autosave.write(&dir) {
                crate::logfile::line("app", &format!("autosave failed: {e}"));
            }
        } else {
            Autosave::remove(&dir);
        }
    }

    /// A clean end: nothing to offer back next time.
    pub fn clean_exit(&mut self) {
        if let (Some(dir), None) = (&self.autosave_dir, &self.restore_offer) {
            Autosave::remove(dir);
        }
    }

    fn restore_ui(&mut self, ctx: &egui::Context) {
        let Some(offer) = &self.restore_offer else { return };
        let from = match &offer.path {
            Some(p) => format!("changes to {}", p.display()),
            None => "an unsaved bench".to_owned(),
        };
        let drives: Vec<&str> = offer.project.drives.iter().map(|d| d.name.as_str()).collect();
        let mut choice = None;
        egui::Modal::new(egui::Id::unique("restore-autosave")).show(ctx, |ui| {
            ui.heading("drivebench did not close cleanly");
            ui.label(format!(
                "An autosave from {} holds {from} (drives: {}).",
                offer.saved_at,
                drives.join(", ")
            ));
            ui.horizontal(|ui| {
                if ui.button("Restore").clicked() {
                    choice = Some(true);
                }
                if ui.button("Discard").clicked() {
                    choice = Some(false);
                }
            });
        });
        match choice {
            Some(true) => {
                if let Some(offer) = self.restore_offer.take() {
                    let saved = offer.path.as_ref().and_then(|p| Project::load(p).ok());
                    self.open_project(offer.project, offer.path);
                    // Still unsaved: what is on disk (if anything) is the saved state.
                    self.project = saved.unwrap_or_default();
                    crate::logfile::line("app", &format!("restored the autosave from {}", offer.saved_at));
                }
            }
            Some(false) => {
                self.restore_offer = None;
                if let Some(dir) = &self.autosave_dir {
                    Autosave::remove(dir);
                }
            }
            None => {}
        }
    }

    /// Shows an error window and logs it.
    /// An error the user must see; the bench was left as it was.
    pub fn show_notice(&mut self, title: &str, text: String) {
        crate::logfile::line("app", &format!("{title}: {text}"));
        self.notice = Some(Notice { title: title.to_owned(), text, error: true });
    }

    /// Something the user should know that is not an error.
    pub fn show_info(&mut self, title: &str, text: String) {
        crate::logfile::line("app", &format!("{title}: {text}"));
        self.notice = Some(Notice { title: title.to_owned(), text, error: false });
    }

    /// The window was asked to close. With drives enabled, the close is held and the user
    /// asked first; returns whether the window may close now.
    pub fn close_requested(&mut self) -> bool {
        if self.quit_approved || !self.bench.any_enabled() {
            self.stop_recording();
            return true;
        }
        self.confirm_quit = true;
        false
    }

    /// "Disable all and quit": every drive is disabled before the window goes.
    pub fn approve_quit(&mut self, ctx: &egui::Context) {
        self.confirm_quit = false;
        self.quit_approved = true;
        self.bench.disable_all();
        self.bench.pump(Duration::from_millis(50));
        self.stop_recording();
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    fn confirm_quit_ui(&mut self, ctx: &egui::Context) {
        if !self.confirm_quit {
            return;
        }
        let enabled: Vec<String> = self
            .bench
            .drives
            .iter()
            .filter(|d| d.state == DriveState::Enabled)
            .map(|d| d.name().to_owned())
            .collect();
        let mut choice = None;
        egui::Modal::new(egui::Id::unique("confirm-quit")).show(ctx, |ui| {
            ui.heading("Quit with drives enabled?");
            ui.label(format!("Enabled: {}. Quitting disables them first.", enabled.join(", ")));
            ui.horizontal(|ui| {
                if ui.button("Disable all and quit").clicked() {
                    choice = Some(true);
                }
                if ui.button("Cancel").clicked() {
                    choice = Some(false);
                }
            });
        });
        match choice {
            Some(true) => self.approve_quit(ctx),
            Some(false) => self.confirm_quit = false,
            None => {}
        }
    }

    /// E-STOP: every drive, at once.
    pub fn estop_all(&mut self) {
        self.bench.estop_all();
        self.status.last_estop_s = Some(self.bench.clock.now_s());
    }

    /// Work that needs no painting: drain events, run the demo script.
    pub fn logic(&mut self, ctx: &egui::Context) {
        let done = self.bench.pump(PUMP_BUDGET);
        if !done {
            ctx.request_repaint();
        }
        self.poll_loading();
        if self.last_autosave.elapsed() >= AUTOSAVE_INTERVAL {
            self.autosave_now();
        }
        if self.bench.recording().is_some() {
            // The elapsed time and file size tick while recording.
            ctx.request_repaint_after(Duration::from_millis(250));
            if self.bench.recording().is_some_and(|r| r.failed()) {
                self.stop_recording();
            }
        }
        if let Some(action) = self.files.poll() {
            self.handle_file_action(action);
        }
        self.run_script();
    }

    fn run_script(&mut self) {
        let now_s = self.bench.clock.now_s();
        let Some(script) = &mut self.script else { return };
        let Some(enabled_at) = script.enabled_at_s else {
            if self.bench.drives.iter().all(|d| d.state.is_connected()) {
                script.enabled_at_s = Some(now_s);
                // Show a serial drive's controls and console, if the bench has one.
                if let Some(d) = self.bench.drives.iter().find(|d| d.is_serial()) {
                    self.selected = Some(d.id);
                }
                for d in &mut self.bench.drives {
                    let _ = d.send(Command::SetMode(ControlMode::Speed));
                    let _ = d.send(Command::Enable);
                }
            }
            return;
        };
        let t = now_s - enabled_at;
        // Show the whole scripted run, however fast frames come.
        self.plots.window_s = (t + 0.3).max(1.0);
        let stage = if t >= DemoScript::SECOND_STEP_S {
            2
        } else if t >= DemoScript::FIRST_STEP_S {
            1
        } else {
            0
        };
        for (i, d) in self.bench.drives.iter_mut().enumerate() {
            let top = d.config.limits.max_speed_rpm.min(1500.0) * if i % 2 == 0 { 1.0 } else { -0.8 };
            let target = [0.0, top, 0.4 * top][stage];
            if d.setpoint != target && d.state == DriveState::Enabled {
                let _ = d.send(Command::SetSetpoint(d.mode, target));
            }
        }
    }

    /// True once the screenshot script has run long enough to show both steps.
    pub fn script_done(&self) -> bool {
        self.script.as_ref().is_some_and(|s| {
            self.frame >= s.frames
                && s.enabled_at_s.is_some_and(|t| self.bench.clock.now_s() - t >= DemoScript::CAPTURE_S)
        })
    }

    fn handle_file_action(&mut self, action: FileAction) {
        match action {
            FileAction::New => {
                self.open_project(Project::default(), None);
            }
            FileAction::Open(path) => {
                self.open_path(&path);
            }
            FileAction::SaveAs(path) => {
                self.save_to(&path);
            }
            FileAction::Save => match self.project_path.clone() {
                Some(path) => {
                    self.save_to(&path);
                }
                None => self.files.save_as_dialog(),
            },
            FileAction::OpenDialog => self.files.open_dialog(),
            FileAction::SaveAsDialog => self.files.save_as_dialog(),
            FileAction::RecordToDialog => {
                let name = recording_file_name(SystemTime::now());
                self.files.record_to_dialog(name);
            }
            FileAction::RecordTo(path) => {
                self.start_recording(Some(path));
            }
            FileAction::OpenRecordingDialog => self.files.open_recording_dialog(),
            FileAction::OpenRecording(path) => self.open_recording(&path),
        }
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        if ctx.input_mut(|i| i.consume_shortcut(&SHORTCUT_ESTOP)) {
            self.estop_all();
        }
        if ctx.input_mut(|i| i.consume_shortcut(&SHORTCUT_NEW)) {
            self.handle_file_action(FileAction::New);
        }
        if ctx.input_mut(|i| i.consume_shortcut(&SHORTCUT_OPEN)) {
            self.handle_file_action(FileAction::OpenDialog);
        }
        if ctx.input_mut(|i| i.consume_shortcut(&SHORTCUT_SAVE)) {
            self.handle_file_action(FileAction::Save);
        }
    }

    /// Draws the whole window.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let started = Instant::now();
        self.frame += 1;
        let ctx = ui.ctx().clone();
        self.shortcuts(&ctx);

        egui::Panel::top("menu").show(ui, |ui| {
            egui::MenuBar::new().ui(ui, |ui| {
                self.menu_ui(ui);
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    self.estop_button_ui(ui);
                    ui.separator();
                    self.record_ui(ui);
                });
            });
        });
        egui::Panel::bottom("status").show(ui, |ui| {
            self.status.ui(ui, &self.bench);
        });
        egui::Panel::left("drives").resizable(true).default_size(210.0).show(ui, |ui| {
            match self.drive_list.ui(ui, &mut self.bench, &mut self.selected) {
                Some(ListAction::AddSimulated) => self.add_simulated_drive(),
                Some(ListAction::AddSerial) => self.open_serial_dialog(),
                None => {}
            }
        });
        egui::Panel::right("control").resizable(true).default_size(330.0).show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                let index = self.selected.and_then(|id| self.bench.index_of(id));
                match index {
                    Some(i) => {
                        let drive = &mut self.bench.drives[i];
                        self.control.ui(ui, drive);
                        ui.separator();
                        self.params.ui(ui, drive);
                    }
                    None => {
                        ui.label("Select a drive in the list, or add one.");
                    }
                }
            });
        });
        let console_drive = self
            .selected
            .and_then(|id| self.bench.index_of(id))
            .filter(|&i| self.bench.drives[i].is_serial());
        if let (true, Some(i)) = (self.show_console, console_drive) {
            egui::Panel::bottom("console").resizable(true).default_size(190.0).show(ui, |ui| {
                self.console.ui(ui, &mut self.bench.drives[i]);
            });
        }
        egui::CentralPanel::default().show(ui, |ui| {
            self.plots.ui(ui, &self.bench);
        });
        if let Some(samples) = self.history.ui(&ctx, &self.bench) {
            self.set_history_capacity(samples);
        }
        if let Some((name, connection)) = self.serial_dialog.ui(&ctx) {
            self.add_serial_drive(name, connection);
        }
        self.notice_ui(&ctx);
        self.about_ui(&ctx);
        self.restore_ui(&ctx);
        if ctx.input(|i| i.viewport().close_requested()) && !self.close_requested() {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
        }
        self.confirm_quit_ui(&ctx);
        self.status.frame_time(started.elapsed());
    }

    fn estop_button_ui(&mut self, ui: &mut egui::Ui) {
        let text = RichText::new("E-STOP").strong().size(16.0).color(Color32::WHITE);
        let button =
            egui::Button::new(text).fill(Color32::from_rgb(200, 30, 30)).min_size(egui::vec2(110.0, 26.0));
        let shortcut = ui.ctx().format_shortcut(&SHORTCUT_ESTOP);
        if ui.add(button).on_hover_text(format!("Disable every drive at once ({shortcut})")).clicked() {
            self.estop_all();
        }
        let any_enabled = self.bench.any_enabled();
        if any_enabled {
            ui.label(RichText::new("drives enabled").color(Color32::from_rgb(230, 160, 40)));
        }
    }

    /// Record / Stop and, while recording, a red indicator with elapsed time and file size.
    fn record_ui(&mut self, ui: &mut egui::Ui) {
        let red = Color32::from_rgb(220, 40, 40);
        match self.bench.recording() {
            Some(rec) => {
                if ui.button("⏹ Stop recording").on_hover_text("Finish the file").clicked() {
                    self.stop_recording();
                    return;
                }
                let stats = rec.stats();
                let secs = rec.elapsed().as_secs_f64();
                let mb = stats.bytes.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6;
                let lost = stats.lost.load(std::sync::atomic::Ordering::Relaxed);
                let mut text = format!("REC {:02}:{:04.1} · {mb:.1} MB", (secs / 60.0) as u64, secs % 60.0);
                if lost > 0 {
                    text.push_str(&format!(" · {lost} LOST"));
                }
                let file = rec.path().display().to_string();
                ui.label(RichText::new(text).strong().color(red)).on_hover_text(file);
                let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
                // Blinks once a second.
                if secs.fract() < 0.6 {
                    ui.painter().circle_filled(rect.center(), 5.0, red);
                }
            }
            None => {
                let tip = format!(
                    "Write every sample of every drive to {} (File ▸ Record to… picks the file)",
                    self.default_recording_path().display()
                );
                if ui.button(RichText::new("⏺ Record").color(red)).on_hover_text(tip).clicked() {
                    self.start_recording(None);
                }
                if let Some(last) = &self.last_recording {
                    ui.label(RichText::new(last).small().weak());
                }
            }
        }
    }

    fn menu_ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        ui.menu_button("File", |ui| {
            let item = |ui: &mut egui::Ui, text: &str, shortcut: Option<&KeyboardShortcut>| {
                let mut b = egui::Button::new(text);
                if let Some(s) = shortcut {
                    b = b.shortcut_text(ctx.format_shortcut(s));
                }
                ui.add(b).clicked()
            };
            if item(ui, "New", Some(&SHORTCUT_NEW)) {
                self.handle_file_action(FileAction::New);
            }
            if item(ui, "Open…", Some(&SHORTCUT_OPEN)) {
                self.handle_file_action(FileAction::OpenDialog);
            }
            if item(ui, "Save", Some(&SHORTCUT_SAVE)) {
                self.handle_file_action(FileAction::Save);
            }
            if item(ui, "Save As…", None) {
                self.handle_file_action(FileAction::SaveAsDialog);
            }
            ui.separator();
            if item(ui, "Record to…", None) {
                self.handle_file_action(FileAction::RecordToDialog);
            }
            if item(ui, "Open recording…", None) {
                self.handle_file_action(FileAction::OpenRecordingDialog);
            }
            ui.separator();
            ui.menu_button("Open Recent", |ui| {
                if self.recent.is_empty() {
                    ui.label("(none yet)");
                }
                let mut chosen = None;
                for path in &self.recent {
                    if ui.button(path.display().to_string()).clicked() {
                        chosen = Some(path.clone());
                    }
                }
                if let Some(path) = chosen {
                    self.handle_file_action(FileAction::Open(path));
                }
            });
            ui.separator();
            if item(ui, "Quit", None) && self.close_requested() {
                ui.send_viewport_cmd(egui::ViewportCommand::Close);
            }
        });
        ui.menu_button("Drives", |ui| {
            if ui.button("Add simulated drive").clicked() {
                self.add_simulated_drive();
            }
            if ui.button("Add serial drive…").clicked() {
                self.open_serial_dialog();
            }
            ui.checkbox(&mut self.show_console, "Show serial console");
            if ui.button("History…").clicked() {
                self.history.show(&self.bench);
            }
            if ui.button("Connect all").clicked() {
                self.bench.connect_all();
            }
            if ui.button("Disable all").clicked() {
                self.bench.disable_all();
            }
        });
        ui.menu_button("Help", |ui| {
            if ui.button("About drivebench").clicked() {
                self.show_about = true;
            }
        });
        let title = match &self.project_path {
            Some(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            None => "unsaved bench".into(),
        };
        ui.label(RichText::new(title).weak());
    }

    fn about_ui(&mut self, ctx: &egui::Context) {
        if !self.show_about {
            return;
        }
        let mut open = true;
        egui::Window::new("About drivebench").collapsible(false).resizable(false).open(&mut open).show(
            ctx,
            |ui| {
                ui.label(RichText::new(format!("drivebench {}", env!("CARGO_PKG_VERSION"))).strong());
                ui.label(env!("CARGO_PKG_DESCRIPTION"));
                ui.separator();
                match crate::logfile::path() {
                    Some(path) => {
                        ui.label("Connection events, faults, errors and refused commands are logged to");
                        let shown = path.display().to_string();
                        ui.horizontal(|ui| {
                            ui.monospace(&shown);
                            if ui.small_button("Copy").clicked() {
                                ui.ctx().copy_text(shown.clone());
                            }
                        });
                        ui.label("Attach it (and the rotated .1 … .3 files) to a bug report.");
                    }
                    None => {
                        ui.label("Logging is off in this session.");
                    }
                }
            },
        );
        if !open {
            self.show_about = false;
        }
    }

    fn notice_ui(&mut self, ctx: &egui::Context) {
        let Some(notice) = &self.notice else { return };
        let mut open = true;
        let mut dismissed = false;
        egui::Window::new(notice.title.clone()).collapsible(false).resizable(false).open(&mut open).show(
            ctx,
            |ui| {
                if notice.error {
                    ui.label(RichText::new(&notice.text).color(ui.visuals().error_fg_color));
                    ui.label("The bench was left as it was.");
                } else {
                    ui.label(&notice.text);
                }
                if ui.button("OK").clicked() {
                    dismissed = true;
                }
            },
        );
        if !open || dismissed {
            self.notice = None;
        }
    }

    /// Frames shown so far.
    pub fn frame(&self) -> u64 {
        self.frame
    }
}

/// `drivebench-2026-11-29_14-03-12.csv` from a wall-clock time (UTC).
fn recording_file_name(now: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    // 2026-11-29T14:03:12Z → 2026-11-29_14-03-12 (no ':' in file names).
    let stamp = stamp.trim_end_matches('Z').replace('T', "_").replace(':', "-");
    format!("drivebench-{stamp}.csv")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_names_sort_by_time_and_avoid_colons() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(recording_file_name(t), "drivebench-2026-11-18_11-06-40.csv");
    }
}
