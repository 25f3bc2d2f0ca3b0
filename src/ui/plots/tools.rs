//! The scope tools around the plot stack: the trigger's settings and state, the A/B cursor
//! and statistics tables, and the exports (CSV written off the UI thread, PNG cropped from a
//! window screenshot).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use egui::RichText;

use crate::bench::Bench;
use crate::project::{TriggerEdge, TriggerMode};
use crate::telemetry::Series;
use crate::ui::export::{ExportDialogs, ExportError, ExportKind, TraceRef, WindowSamples, save_png_crop};
use crate::ui::scope::{TriggerState, WindowStats, format_time, format_value, window_stats};

use super::{CURSOR_A_COLOR, CURSOR_B_COLOR, CursorId, PlotsPanel, STATS_PERIOD, TRIGGER_COLOR};

/// A visible trace's values at the cursors (nearest stored samples, true values).
#[derive(Debug, Clone, PartialEq)]
pub struct CursorRow {
    /// `DRIVE.SIGNAL`.
    pub key: String,
    pub unit: String,
    pub at_a: Option<f64>,
    pub at_b: Option<f64>,
}

impl CursorRow {
    /// Value at B minus value at A.
    pub fn delta(&self) -> Option<f64> {
        Some(self.at_b? - self.at_a?)
    }
}

/// A visible trace's statistics over the window they were computed for.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsRow {
    pub key: String,
    pub unit: String,
    pub stats: Option<WindowStats>,
}

/// The outcome of an export, shown under the toolbar until dismissed.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportStatus {
    pub ok: bool,
    pub text: String,
}

/// A PNG export between the request and the screenshot's arrival.
pub(super) struct PngRequest {
    /// Tells this request's screenshot from a late one of an abandoned request.
    seq: u64,
    requested: Instant,
    path: PathBuf,
    /// The plot stack in physical pixels when the screenshot was requested.
    crop_px: [f32; 4],
}

/// A screenshot that has not arrived by then will not come (a backend without screenshots).
const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// Exports running off the UI thread and their results.
pub(super) struct Exports {
    dialogs: ExportDialogs,
    /// A PNG export waiting for the next frame to request its screenshot.
    png_queued: Option<PathBuf>,
    png_waiting: Option<PngRequest>,
    png_seq: u64,
    screenshot_tx: Sender<(u64, Arc<egui::ColorImage>)>,
    screenshot_rx: Receiver<(u64, Arc<egui::ColorImage>)>,
    done_tx: Sender<ExportStatus>,
    done_rx: Receiver<ExportStatus>,
}

impl Default for Exports {
    fn default() -> Self {
        let (screenshot_tx, screenshot_rx) = bounded(2);
        let (done_tx, done_rx) = bounded(8);
        Exports {
            dialogs: ExportDialogs::default(),
            png_queued: None,
            png_waiting: None,
            png_seq: 0,
            screenshot_tx,
            screenshot_rx,
            done_tx,
            done_rx,
        }
    }
}

/// Statistics as last computed, and for which window and traces.
#[derive(Default)]
pub(super) struct StatsCache {
    rows: Vec<StatsRow>,
    window: Option<(f64, f64)>,
    at: Option<Instant>,
}

impl PlotsPanel {
    /// Statistics as shown in the table, and the window they cover.
    pub fn stats(&self) -> (&[StatsRow], Option<(f64, f64)>) {
        (&self.stats.rows, self.stats.window)
    }

    /// Starts writing every raw sample of the visible traces in the visible window to `path`
    /// as CSV. The samples are copied now; the file is written on another thread and the
    /// outcome appears in [`export_status`](Self::export_status).
    pub fn export_csv(&mut self, bench: &Bench, path: &Path, ctx: &egui::Context) {
        let Some((t0, t1)) = self.view_s else {
            self.export_status =
                Some(ExportStatus { ok: false, text: "nothing is shown yet to export".into() });
            return;
        };
        let traces: Vec<TraceRef> = self.visible_traces(bench).into_iter().map(|(t, _)| t).collect();
        let samples = WindowSamples::collect(bench, &traces, t0, t1);
        let path = path.to_owned();
        let tx = self.exports.done_tx.clone();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new().name("export-csv".into()).spawn(move || {
            let status = match samples.write_csv(&path) {
                Ok(rows) => ExportStatus {
                    ok: true,
                    text: format!(
                        "{} samples ({rows} rows, {} … {} s) written to {}",
                        samples.len(),
                        format_time(t0),
                        format_time(t1),
                        path.display()
                    ),
                },
                Err(e) => ExportStatus { ok: false, text: e.to_string() },
            };
            let _ = tx.send(status);
            ctx.request_repaint();
        });
        if let Err(e) = spawned {
            self.export_status =
                Some(ExportStatus { ok: false, text: format!("cannot start the export: {e}") });
        }
    }

    /// Writes the plot stack as the user sees it to `path` as PNG: a screenshot of the window
    /// is requested in the next frame and cropped to the plots when it arrives.
    pub fn export_png(&mut self, path: &Path) {
        self.exports.png_queued = Some(path.to_owned());
    }

    /// The scope row: tool toggles, export, the trigger's settings, arming and state.
    pub(super) fn scope_ui(&mut self, ui: &mut egui::Ui, bench: &Bench) {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("Scope:").weak());
            let was_shown = self.cursors.shown;
            ui.toggle_value(&mut self.cursors.shown, "Cursors")
                .on_hover_text("A/B cursors: click a plot to set A, Shift+click for B, or drag a line");
            if self.cursors.shown && !was_shown && !self.cursors.placed {
                let (t0, t1) = self.view_s.unwrap_or((0.0, self.window_s));
                self.cursors.a_s = t0 + (t1 - t0) / 3.0;
                self.cursors.b_s = t0 + 2.0 * (t1 - t0) / 3.0;
                self.cursors.placed = true;
            }
            ui.toggle_value(&mut self.show_stats, "Statistics")
                .on_hover_text("Min, max, mean, RMS of every shown trace over the visible window");
            let busy = self.exports.dialogs.is_open() || self.exports.png_waiting.is_some();
            ui.add_enabled_ui(!busy, |ui| {
                ui.menu_button("Export", |ui| {
                    if ui
                        .button("CSV of the visible window…")
                        .on_hover_text("Every stored sample of the shown traces in the visible time window")
                        .clicked()
                    {
                        self.exports.dialogs.save(ExportKind::Csv, ui.ctx());
                    }
                    if ui.button("PNG of the plots…").clicked() {
                        self.exports.dialogs.save(ExportKind::Png, ui.ctx());
                    }
                });
            });
            ui.separator();
            self.trigger_ui(ui, bench);
        });
        let mut dismiss = false;
        if let Some(status) = &self.export_status {
            ui.horizontal_wrapped(|ui| {
                let color = if status.ok { ui.visuals().text_color() } else { ui.visuals().error_fg_color };
                ui.add(egui::Label::new(RichText::new(&status.text).color(color).small()).wrap());
                dismiss = ui.small_button("✖").on_hover_text("Dismiss").clicked();
            });
        }
        if dismiss {
            self.export_status = None;
        }
    }

    /// Trigger settings in a menu, then Arm/Stop and the trigger's state.
    pub(super) fn trigger_ui(&mut self, ui: &mut egui::Ui, bench: &Bench) {
        let sources: Vec<String> = bench
            .drives
            .iter()
            .flat_map(|d| d.signals.iter().map(move |s| format!("{}.{}", d.name(), s.name)))
            .collect();
        let armed = self.trigger.is_armed();
        let before = self.trigger.settings.source.clone();
        let settings = &mut self.trigger.settings;
        // The default source is the first signal of the first drive (not of whichever drive
        // happened to announce its signals first).
        if settings.source.is_empty()
            && let Some(d) = bench.drives.first()
            && let Some(first) = d.signals.first()
        {
            settings.source = format!("{}.{}", d.name(), first.name);
        }
        let unit = source_unit(bench, &settings.source);
        // Values are typed and choices clicked one after the other: the menu stays open until
        // a click outside it.
        let config = egui::containers::menu::MenuConfig::new()
            .close_behavior(egui::PopupCloseBehavior::CloseOnClickOutside);
        let (_, menu) = egui::containers::menu::MenuButton::new("Trigger…").config(config).ui(ui, |ui| {
            egui::Grid::new("trigger-settings").num_columns(2).spacing([8.0, 6.0]).show(ui, |ui| {
                ui.label("Source:");
                ui.menu_button(format!("{} ⏵", settings.source), |ui| {
                    egui::ScrollArea::vertical().max_height(300.0).show(ui, |ui| {
                        for s in &sources {
                            if ui.selectable_label(settings.source == *s, s).clicked() {
                                settings.source = s.clone();
                                ui.close();
                            }
                        }
                    });
                });
                ui.end_row();
                ui.label("Edge:");
                ui.horizontal(|ui| {
                    for e in [TriggerEdge::Rising, TriggerEdge::Falling, TriggerEdge::Either] {
                        ui.selectable_value(&mut settings.edge, e, edge_text(e));
                    }
                });
                ui.end_row();
                let label = ui.label("Level:");
                let speed = (settings.level.abs() * 0.005).max(0.01);
                ui.add(egui::DragValue::new(&mut settings.level).speed(speed).suffix(format!(" {unit}")))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("Pre-trigger:");
                let pre = &mut settings.pre_trigger;
                ui.add(
                    egui::DragValue::from_get_set(|v| {
                        if let Some(v) = v {
                            *pre = (v / 100.0).clamp(0.0, 1.0);
                        }
                        *pre * 100.0
                    })
                    .range(0.0..=100.0)
                    .speed(0.5)
                    .max_decimals(1)
                    .suffix(" %"),
                )
                .labelled_by(label.id)
                .on_hover_text("Share of the window shown before the trigger time");
                ui.end_row();
                ui.label("Mode:");
                ui.horizontal(|ui| {
                    ui.selectable_value(
                        &mut settings.mode,
                        TriggerMode::Single,
                        mode_text(TriggerMode::Single),
                    )
                    .on_hover_text("One capture, then the trigger disarms");
                    ui.selectable_value(
                        &mut settings.mode,
                        TriggerMode::Normal,
                        mode_text(TriggerMode::Normal),
                    )
                    .on_hover_text("Re-armed after each capture: the next crossing replaces it");
                });
                ui.end_row();
            });
            ui.label(RichText::new("The capture spans the plots' window; the view freezes on it.").weak());
        });
        self.trigger_setup_open = menu.is_some();
        if armed {
            if ui.button("■ Stop").clicked() {
                self.trigger.stop();
            }
        } else if ui.button("⏺ Arm").on_hover_text("Wait for the next crossing").clicked() {
            self.arm_trigger(bench);
        }
        if armed && self.trigger.settings.source != before {
            self.arm_trigger(bench);
        }
        self.trigger_status_ui(ui);
    }

    /// Arms the trigger on the samples that arrive from now on, and follows the live data
    /// while it waits.
    pub fn arm_trigger(&mut self, bench: &Bench) {
        let source = self.trigger.settings.source.clone();
        let located = split_key(&source).and_then(|(drive, signal)| Some((bench.by_name(drive)?, signal)));
        match located {
            Some((drive, signal)) => {
                let telemetry = drive.telemetry();
                self.trigger.arm(telemetry.series(signal));
            }
            None => self.trigger.arm(None),
        }
        self.follow = true;
    }

    pub(super) fn trigger_status_ui(&self, ui: &mut egui::Ui) {
        let settings = &self.trigger.settings;
        let text = match (self.trigger.state(), &self.trigger.capture) {
            (TriggerState::Armed, None) => format!(
                "armed — waiting for {} {} {}",
                settings.source,
                edge_text(settings.edge),
                format_value(settings.level)
            ),
            (TriggerState::Armed, Some(c)) => {
                format!("Triggered at t = {} s — re-armed", format_time(c.t_trig_s))
            }
            (TriggerState::Waiting { t_trig_s, .. }, _) => {
                format!("crossed at t = {} s — capturing…", format_time(t_trig_s))
            }
            (TriggerState::Stopped, Some(c)) => format!("Triggered at t = {} s", format_time(c.t_trig_s)),
            (TriggerState::Stopped, None) => return,
        };
        let color = if self.trigger.is_armed() { TRIGGER_COLOR } else { ui.visuals().text_color() };
        ui.label(RichText::new(text).color(color));
    }

    /// Feeds the trigger what its source received since the last frame; a finished capture
    /// pauses the view on its window.
    pub(super) fn update_trigger(&mut self, bench: &Bench) {
        if !self.trigger.is_armed() {
            return;
        }
        let Some((drive, signal)) = split_key(&self.trigger.settings.source) else { return };
        let Some(drive) = bench.by_name(drive) else { return };
        let capture = {
            let telemetry = drive.telemetry();
            let Some(series) = telemetry.series(signal) else { return };
            self.trigger.update(series, self.window_s)
        };
        if let Some(c) = capture {
            self.show_range(c.t0_s, c.t1_s);
        }
    }

    /// What to mark for the trigger: the time of the last capture and the level (while the
    /// trigger is set up or has captured), with the source `DRIVE.SIGNAL`.
    pub(super) fn trigger_mark(&self) -> Option<TriggerMark> {
        let settings = &self.trigger.settings;
        let capture = self.trigger.capture.as_ref();
        if !(self.trigger_setup_open || self.trigger.is_armed() || capture.is_some()) {
            return None;
        }
        let (source, level) = match capture {
            Some(c) if !self.trigger.is_armed() => (c.source.clone(), c.level),
            _ => (settings.source.clone(), settings.level),
        };
        Some(TriggerMark { t_s: capture.map(|c| c.t_trig_s), source, level })
    }

    /// Cursor values (every frame: O(log n) per trace) and statistics (throttled while the
    /// window moves: they scan the window).
    pub(super) fn update_readouts(&mut self, bench: &Bench, view: (f64, f64)) {
        let traces =
            if self.cursors.shown || self.show_stats { self.visible_traces(bench) } else { Vec::new() };
        self.cursor_rows.clear();
        if self.cursors.shown {
            for (trace, unit) in &traces {
                let Some(drive) = bench.by_name(&trace.drive) else { continue };
                let telemetry = drive.telemetry();
                let Some(series) = telemetry.series(&trace.signal) else { continue };
                self.cursor_rows.push(CursorRow {
                    key: format!("{}.{}", trace.drive, trace.signal),
                    unit: unit.clone(),
                    at_a: value_at(series, self.cursors.a_s),
                    at_b: value_at(series, self.cursors.b_s),
                });
            }
        }
        if !self.show_stats {
            self.stats = StatsCache::default();
            return;
        }
        let keys_changed = self.stats.rows.len() != traces.len()
            || self
                .stats
                .rows
                .iter()
                .zip(&traces)
                .any(|(r, (t, _))| r.key != format!("{}.{}", t.drive, t.signal));
        let due = self.stats.at.is_none_or(|at| at.elapsed() >= STATS_PERIOD);
        let moved = self.stats.window != Some(view);
        if !(keys_changed || due || (moved && !self.follow)) {
            return;
        }
        let mut rows = Vec::with_capacity(traces.len());
        for (trace, unit) in &traces {
            let Some(drive) = bench.by_name(&trace.drive) else { continue };
            let stats = {
                let telemetry = drive.telemetry();
                telemetry.series(&trace.signal).and_then(|s| window_stats(s, view.0, view.1))
            };
            rows.push(StatsRow {
                key: format!("{}.{}", trace.drive, trace.signal),
                unit: unit.clone(),
                stats,
            });
        }
        self.stats = StatsCache { rows, window: Some(view), at: Some(Instant::now()) };
    }

    /// Cursor readouts and statistics in a resizable strip under the plots.
    pub(super) fn tables_ui(&mut self, ui: &mut egui::Ui) {
        egui::Panel::bottom("scope-tables").resizable(true).default_size(180.0).min_size(60.0).show(
            ui,
            |ui| {
                egui::ScrollArea::both().auto_shrink([false, true]).show(ui, |ui| {
                    if self.cursors.shown {
                        self.cursor_table_ui(ui);
                    }
                    if self.show_stats {
                        if self.cursors.shown {
                            ui.separator();
                        }
                        self.stats_table_ui(ui);
                    }
                });
            },
        );
    }

    pub(super) fn cursor_table_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            let speed = (self.window_s / 1000.0).max(1e-6);
            for (id, name, color) in
                [(CursorId::A, "Cursor A:", CURSOR_A_COLOR), (CursorId::B, "Cursor B:", CURSOR_B_COLOR)]
            {
                let label = ui.label(RichText::new(name).color(color).strong());
                let value = match id {
                    CursorId::A => &mut self.cursors.a_s,
                    CursorId::B => &mut self.cursors.b_s,
                };
                ui.add(egui::DragValue::new(value).speed(speed).max_decimals(6).suffix(" s"))
                    .labelled_by(label.id);
            }
            let dt = self.cursors.dt_s();
            let inv = if dt != 0.0 { format!("{} Hz", format_value(1.0 / dt)) } else { "—".into() };
            ui.label(RichText::new(format!("Δt = {} s   1/Δt = {inv}", format_value(dt))).monospace());
            ui.label(RichText::new("(values at the nearest samples)").weak().small());
        });
        egui::Grid::new("cursor-table")
            .striped(true)
            .spacing([14.0, 4.0])
            .num_columns(4)
            .min_col_width(60.0)
            .show(ui, |ui| {
                ui.label(RichText::new("trace [unit]").weak());
                ui.label(RichText::new("at A").color(CURSOR_A_COLOR));
                ui.label(RichText::new("at B").color(CURSOR_B_COLOR));
                ui.label(RichText::new("B − A").weak());
                ui.end_row();
                let cell = |v: Option<f64>| v.map(format_value).unwrap_or_else(|| "—".into());
                for row in &self.cursor_rows {
                    trace_cell_ui(ui, &row.key, &row.unit);
                    ui.monospace(cell(row.at_a));
                    ui.monospace(cell(row.at_b));
                    ui.monospace(cell(row.delta()));
                    ui.end_row();
                }
            });
    }

    pub(super) fn stats_table_ui(&self, ui: &mut egui::Ui) {
        let title = match self.stats.window {
            Some((t0, t1)) => {
                format!("Statistics over the visible window {} … {} s", format_time(t0), format_time(t1))
            }
            None => "Statistics over the visible window".into(),
        };
        ui.label(RichText::new(title).strong());
        egui::Grid::new("stats-table")
            .striped(true)
            .spacing([14.0, 4.0])
            .num_columns(7)
            .min_col_width(60.0)
            .show(ui, |ui| {
                for h in ["trace [unit]", "min", "max", "mean", "RMS", "peak-peak", "samples"] {
                    ui.label(RichText::new(h).weak());
                }
                ui.end_row();
                for row in &self.stats.rows {
                    trace_cell_ui(ui, &row.key, &row.unit);
                    match &row.stats {
                        Some(s) => {
                            for v in [s.min, s.max, s.mean, s.rms, s.peak_to_peak()] {
                                ui.monospace(format_value(v));
                            }
                            ui.monospace(s.count.to_string());
                        }
                        None => {
                            for _ in 0..5 {
                                ui.monospace("—");
                            }
                            ui.monospace("0");
                        }
                    }
                    ui.end_row();
                }
            });
    }

    /// Dialog results, screenshots and finished exports.
    pub(super) fn poll_exports(&mut self, ctx: &egui::Context, bench: &Bench) {
        if let Some((kind, path)) = self.exports.dialogs.poll()
            && let Some(path) = path
        {
            match kind {
                ExportKind::Csv => self.export_csv(bench, &path, ctx),
                ExportKind::Png => self.export_png(&path),
            }
        }
        let waiting = self.exports.png_waiting.as_ref().map(|r| r.seq);
        let arrived = self.exports.screenshot_rx.try_iter().find(|(seq, _)| Some(*seq) == waiting);
        if arrived.is_none()
            && self.exports.png_waiting.as_ref().is_some_and(|r| r.requested.elapsed() > SCREENSHOT_TIMEOUT)
        {
            self.exports.png_waiting = None;
            self.export_status =
                Some(ExportStatus { ok: false, text: ExportError::NoScreenshot.to_string() });
        }
        if let Some((_, image)) = arrived
            && let Some(request) = self.exports.png_waiting.take()
        {
            let tx = self.exports.done_tx.clone();
            let ctx = ctx.clone();
            let spawned = std::thread::Builder::new().name("export-png".into()).spawn(move || {
                let status = match save_png_crop(&image, request.crop_px, &request.path) {
                    Ok([w, h]) => ExportStatus {
                        ok: true,
                        text: format!("plots ({w}×{h} px) written to {}", request.path.display()),
                    },
                    Err(e) => ExportStatus { ok: false, text: e.to_string() },
                };
                let _ = tx.send(status);
                ctx.request_repaint();
            });
            if let Err(e) = spawned {
                self.export_status =
                    Some(ExportStatus { ok: false, text: format!("cannot start the export: {e}") });
            }
        }
        if let Ok(status) = self.exports.done_rx.try_recv() {
            self.export_status = Some(status);
        }
    }

    /// Asks for a screenshot of this frame for a queued PNG export (the plots have just been
    /// laid out, so their rectangle is known).
    pub(super) fn request_png(&mut self, ctx: &egui::Context) {
        let Some(path) = self.exports.png_queued.take() else { return };
        let Some(rect) = self.stack_rect.filter(|r| r.is_positive()) else {
            self.export_status =
                Some(ExportStatus { ok: false, text: ExportError::NoScreenshot.to_string() });
            return;
        };
        let ppp = ctx.pixels_per_point();
        let crop_px = [rect.min.x * ppp, rect.min.y * ppp, rect.max.x * ppp, rect.max.y * ppp];
        self.exports.png_seq += 1;
        let seq = self.exports.png_seq;
        self.exports.png_waiting = Some(PngRequest { seq, requested: Instant::now(), path, crop_px });
        let tx = self.exports.screenshot_tx.clone();
        let waker = ctx.clone();
        ctx.request_screenshot(move |image| {
            let _ = tx.try_send((seq, image));
            waker.request_repaint();
        });
        // Wake up to give up on a screenshot that never comes.
        ctx.request_repaint_after(SCREENSHOT_TIMEOUT + Duration::from_millis(100));
    }
}

/// The trigger's marks in the plots.
#[derive(Debug, Clone)]
pub(super) struct TriggerMark {
    pub(super) t_s: Option<f64>,
    pub(super) source: String,
    pub(super) level: f64,
}

/// The value of the sample nearest to `t_s`, if `t_s` lies within the stored samples: beyond
/// them the nearest sample would be a value from another time.
fn value_at(series: &Series, t_s: f64) -> Option<f64> {
    let first = series.first_t()?;
    let (last, _) = series.last()?;
    if !(first..=last).contains(&t_s) {
        return None;
    }
    series.nearest(t_s).map(|(_, v)| v)
}

/// A table's first cell: the trace and, weaker, its unit.
fn trace_cell_ui(ui: &mut egui::Ui, key: &str, unit: &str) {
    ui.horizontal(|ui| {
        ui.spacing_mut().item_spacing.x = 4.0;
        ui.label(key);
        if !unit.is_empty() {
            ui.label(RichText::new(format!("[{unit}]")).weak());
        }
    });
}

/// `DRIVE.SIGNAL` → (drive, signal); drive names never contain a dot.
pub(super) fn split_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('.')
}

/// The unit of a `DRIVE.SIGNAL`, or "".
fn source_unit(bench: &Bench, key: &str) -> String {
    split_key(key)
        .and_then(|(drive, signal)| bench.by_name(drive)?.signal_unit(signal).map(str::to_owned))
        .unwrap_or_default()
}

fn edge_text(edge: TriggerEdge) -> &'static str {
    match edge {
        TriggerEdge::Rising => "↗ rising",
        TriggerEdge::Falling => "↘ falling",
        TriggerEdge::Either => "↕ either",
    }
}

fn mode_text(mode: TriggerMode) -> &'static str {
    match mode {
        TriggerMode::Single => "single",
        TriggerMode::Normal => "normal",
    }
}
