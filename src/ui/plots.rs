//! Live plots: a stack of plots on one shared time axis, every drive's traces with their
//! setpoints, a legend strip with per-trace show/hide, follow and paused modes, and a hover
//! readout. Each trace is handed to egui_plot already decimated (M4, ≤ 4 points per pixel
//! column), so the per-frame cost does not depend on how much history is stored.
//!
//! The scope tools live here too: A/B cursors across the stack, a level trigger with
//! pre-trigger that freezes the view on a capture, statistics over the visible window, a
//! second value axis per plot, and export of the visible window (CSV of the raw samples, PNG
//! of the plots). Their logic is in [`super::scope`] and [`super::export`]; their controls and
//! tables are in the `tools` submodule.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use egui::{Align2, Color32, RichText, Stroke};
use egui_plot::{
    AxisHints, GridMark, HLine, HPlacement, Line, LineStyle, Plot, PlotPoint, PlotPoints, Span, Text, VLine,
};

use crate::bench::Bench;
use crate::project::{PlotConfig, PlotLayout};

use super::export::TraceRef;
use super::scope::{AxisMap, Trigger, format_value};

mod tools;

pub use tools::{CursorRow, ExportStatus, StatsRow};
use tools::{Exports, StatsCache, TriggerMark, split_key};

/// Trace colours, one per drive, in order.
const PALETTE: [Color32; 6] = [
    Color32::from_rgb(66, 135, 245),
    Color32::from_rgb(245, 130, 48),
    Color32::from_rgb(60, 180, 75),
    Color32::from_rgb(190, 80, 220),
    Color32::from_rgb(230, 60, 70),
    Color32::from_rgb(70, 200, 200),
];

const CURSOR_A_COLOR: Color32 = Color32::from_rgb(250, 210, 70);
const CURSOR_B_COLOR: Color32 = Color32::from_rgb(120, 220, 250);
const TRIGGER_COLOR: Color32 = Color32::from_rgb(255, 110, 200);
/// Shading of the intervals in which a drive's link was lost.
const GAP_COLOR: Color32 = Color32::from_rgb(230, 80, 60);
/// Width of the left and right value axes: the same in every plot, so that the linked time
/// axes line up.
const LEFT_AXIS_WIDTH: f32 = 64.0;
const RIGHT_AXIS_WIDTH: f32 = 72.0;
/// A cursor line can be grabbed this close to it (points).
const CURSOR_GRAB_PX: f32 = 5.0;
/// Statistics of a moving window are recomputed at most this often.
const STATS_PERIOD: Duration = Duration::from_millis(200);

pub fn drive_color(index: usize) -> Color32 {
    PALETTE[index % PALETTE.len()]
}

/// Values under the pointer, for the readout above the plots.
#[derive(Debug, Clone, Default)]
pub struct HoverReadout {
    pub t_s: f64,
    pub values: Vec<(String, f64, String)>,
}

/// One of the two measurement cursors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorId {
    A,
    B,
}

/// The A/B cursors: two times on the shared axis.
#[derive(Debug, Clone, Default)]
pub struct Cursors {
    pub shown: bool,
    pub a_s: f64,
    pub b_s: f64,
    /// False until first shown: then they are put into the visible window.
    placed: bool,
}

impl Cursors {
    pub fn dt_s(&self) -> f64 {
        self.b_s - self.a_s
    }

    fn set(&mut self, id: CursorId, t_s: f64) {
        if t_s.is_finite() {
            match id {
                CursorId::A => self.a_s = t_s,
                CursorId::B => self.b_s = t_s,
            }
        }
    }
}

pub struct PlotsPanel {
    pub follow: bool,
    pub window_s: f64,
    pub plots: Vec<PlotConfig>,
    /// Traces hidden from every plot, as `DRIVE.SIGNAL`.
    pub hidden: BTreeSet<String>,
    pub hover: Option<HoverReadout>,
    fit_y: bool,
    buf: Vec<[f64; 2]>,
    /// Points handed to egui_plot in the last frame (all traces), for the status line and tests.
    pub points_last_frame: usize,
    /// Link-lost intervals shaded in the last frame: drive, start, end (every plot).
    pub gaps_last_frame: Vec<(String, f64, f64)>,
    /// Signals of telemetry-only drives already given a place (a user may remove them again).
    placed: BTreeSet<String>,
    pub cursors: Cursors,
    pub show_stats: bool,
    pub trigger: Trigger,
    /// The trigger's settings are open: its level is marked in the plots.
    trigger_setup_open: bool,
    /// The time window shown in the last frame.
    pub view_s: Option<(f64, f64)>,
    /// A time range to show on the next frame (paused).
    pending_range: Option<(f64, f64)>,
    /// Per plot: how its right-axis signals are drawn on its value scale.
    right_maps: Vec<AxisMap>,
    /// Per plot, last frame: its data rectangle on screen and the bounds shown in it.
    frames: Vec<(egui::Rect, egui_plot::PlotBounds)>,
    dragging: Option<CursorId>,
    /// The current press began on a cursor line (so its release is no click).
    press_on_cursor: bool,
    /// Cursor readouts of the last frame.
    pub cursor_rows: Vec<CursorRow>,
    stats: StatsCache,
    /// The plot stack on screen in the last frame (points).
    pub stack_rect: Option<egui::Rect>,
    pub export_status: Option<ExportStatus>,
    exports: Exports,
}

impl PlotsPanel {
    pub fn new(layout: &PlotLayout) -> Self {
        PlotsPanel {
            follow: true,
            window_s: layout.window_s,
            plots: layout.plots.clone(),
            hidden: layout.hidden.clone(),
            hover: None,
            fit_y: false,
            buf: Vec::new(),
            points_last_frame: 0,
            gaps_last_frame: Vec::new(),
            placed: BTreeSet::new(),
            cursors: Cursors::default(),
            trigger_setup_open: false,
            show_stats: false,
            trigger: Trigger::new(layout.trigger.clone()),
            view_s: None,
            pending_range: None,
            right_maps: Vec::new(),
            frames: Vec::new(),
            dragging: None,
            press_on_cursor: false,
            cursor_rows: Vec::new(),
            stats: StatsCache::default(),
            stack_rect: None,
            export_status: None,
            exports: Exports::default(),
        }
    }

    /// A telemetry-only drive (Serial Plotter) names its signals as the sketch prints them:
    /// each new one goes into the plot of its unit, or into a "Telemetry" plot, so that a
    /// sketch's data shows without any set-up.
    pub fn place_new_signals(&mut self, bench: &Bench) {
        for d in bench.drives.iter().filter(|d| !d.can_control()) {
            for signal in &d.signals {
                if self.placed.contains(&signal.name) {
                    continue;
                }
                self.placed.insert(signal.name.clone());
                if self.plots.iter().any(|p| p.signals.contains(&signal.name)) {
                    continue;
                }
                let by_unit =
                    self.plots.iter_mut().find(|p| !signal.unit.is_empty() && p.unit == signal.unit);
                let plot = match by_unit {
                    Some(p) => p,
                    None => {
                        if !self.plots.iter().any(|p| p.title == "Telemetry") {
                            self.plots.push(PlotConfig::new("Telemetry", "", Vec::new()));
                        }
                        self.plots.iter_mut().find(|p| p.title == "Telemetry").expect("just added")
                    }
                };
                plot.signals.push(signal.name.clone());
            }
        }
    }

    /// The layout to save in the project.
    pub fn layout(&self) -> PlotLayout {
        PlotLayout {
            window_s: self.window_s,
            plots: self.plots.clone(),
            hidden: self.hidden.clone(),
            trigger: self.trigger.settings.clone(),
        }
    }

    /// Pauses and shows exactly `[t0_s, t1_s]` from the next frame on (e.g. a recording just
    /// opened). A range that is empty or not finite is ignored.
    pub fn show_range(&mut self, t0_s: f64, t1_s: f64) {
        if t0_s.is_finite() && t1_s.is_finite() && t1_s > t0_s {
            self.follow = false;
            self.pending_range = Some((t0_s, t1_s));
        }
    }

    /// Pauses and shows everything stored, from the oldest to the newest sample of any drive.
    pub fn show_whole_history(&mut self, bench: &Bench) {
        let span = bench
            .drives
            .iter()
            .filter_map(|d| d.telemetry().time_span())
            .reduce(|(a0, a1), (b0, b1)| (a0.min(b0), a1.max(b1)));
        if let Some((t0, t1)) = span {
            // A single sample still gets a (1 ms) window around it.
            let pad = if t1 > t0 { 0.0 } else { 5e-4 };
            self.show_range(t0 - pad, t1 + pad);
        }
    }

    /// The traces drawn now, drive by drive, as `DRIVE.SIGNAL` keys with their units.
    pub fn visible_traces(&self, bench: &Bench) -> Vec<(TraceRef, String)> {
        let mut signals: Vec<&String> = Vec::new();
        for p in &self.plots {
            for s in &p.signals {
                if !signals.contains(&s) {
                    signals.push(s);
                }
            }
        }
        let mut out = Vec::new();
        for d in &bench.drives {
            let telemetry = d.telemetry();
            for s in &signals {
                let key = format!("{}.{}", d.name(), s);
                if self.hidden.contains(&key) || telemetry.series(s).is_none() {
                    continue;
                }
                let unit = telemetry.unit(s).unwrap_or("").to_owned();
                out.push((TraceRef { drive: d.name().to_owned(), signal: (*s).clone() }, unit));
            }
        }
        out
    }

    /// Screen x (points) of a time on the shared axis, as laid out in the last frame.
    pub fn time_to_x(&self, t_s: f64) -> Option<f32> {
        let (rect, b) = self.frames.first().filter(|(r, b)| r.width() > 0.0 && b.width() > 0.0)?;
        Some(rect.left() + ((t_s - b.min()[0]) / b.width()) as f32 * rect.width())
    }

    /// What plot `index` showed in the last frame: its data rectangle and bounds (right-axis
    /// values are drawn through [`right_map`](Self::right_map)).
    pub fn plot_frame(&self, index: usize) -> Option<(egui::Rect, egui_plot::PlotBounds)> {
        self.frames.get(index).copied()
    }

    /// How plot `index` draws its right-axis signals on its value scale.
    pub fn right_map(&self, index: usize) -> Option<AxisMap> {
        self.right_maps.get(index).copied()
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, bench: &Bench) {
        self.place_new_signals(bench);
        self.poll_exports(ui.ctx(), bench);
        self.update_trigger(bench);
        self.toolbar_ui(ui, bench);
        self.scope_ui(ui, bench);
        self.legend_ui(ui, bench);
        self.readout_ui(ui);
        if self.plots.is_empty() {
            ui.label("No plots: use “Add plot”.");
            return;
        }
        let now_s = bench.clock.now_s();
        // The window every plot shows this frame (paused: as left by the last frame's panning).
        let view = match (self.pending_range, self.follow, self.view_s) {
            (Some(range), _, _) => range,
            (None, true, _) | (None, false, None) => (now_s - self.window_s, now_s),
            (None, false, Some(last)) => last,
        };
        self.update_readouts(bench, view);
        if self.cursors.shown || self.show_stats {
            self.tables_ui(ui);
        }
        self.plot_stack_ui(ui, bench, view);
        self.request_png(ui.ctx());
    }

    fn plot_stack_ui(&mut self, ui: &mut egui::Ui, bench: &Bench, view: (f64, f64)) {
        let group = egui::Id::unique("drivebench-time-axis");
        let n = self.plots.len();
        self.right_maps.resize(n, AxisMap::IDENTITY);
        self.frames.resize(n, (egui::Rect::NOTHING, egui_plot::PlotBounds::NOTHING));
        let spacing = ui.spacing().item_spacing.y;
        // Each plot has a header row above it.
        let header = ui.spacing().interact_size.y + spacing;
        let height = ((ui.available_height() - (header + spacing) * n as f32) / n as f32).max(80.0);
        let width_px = (ui.available_width() * ui.pixels_per_point()).max(1.0) as usize;
        let grab = self.grab_cursor(ui);
        let mut hover = None;
        let mut interacted = false;
        let mut points = 0;
        let mut gaps = Vec::new();
        let mut remove = None;
        let mut stack_rect = egui::Rect::NOTHING;
        let all_signals = signal_names(bench);
        let any_right = self.plots.iter().any(|p| !p.right_signals.is_empty());
        let trigger_mark = self.trigger_mark();
        for pi in 0..n {
            let plot_cfg = self.plots[pi].clone();
            let header_rect = ui
                .horizontal(|ui| self.plot_header_ui(ui, pi, &plot_cfg, &all_signals, n, &mut remove))
                .response
                .rect;
            stack_rect = stack_rect.union(header_rect);
            let unit = plot_cfg.unit.clone();
            let right_unit = right_axis_unit(bench, &plot_cfg);
            let map = Rc::new(Cell::new(self.right_maps[pi]));
            let mut y_axes = vec![
                AxisHints::new_y()
                    .label(unit.clone())
                    .formatter(|m, _| grid_label(m))
                    .min_thickness(LEFT_AXIS_WIDTH),
            ];
            if any_right {
                let hints = AxisHints::new_y().placement(HPlacement::Right).min_thickness(RIGHT_AXIS_WIDTH);
                y_axes.push(if plot_cfg.right_signals.is_empty() {
                    hints.formatter(|_, _| String::new())
                } else {
                    let map = map.clone();
                    hints.label(right_unit.clone()).formatter(move |m, _| {
                        let map = map.get();
                        grid_label(GridMark {
                            value: map.to_right(m.value),
                            step_size: m.step_size * map.scale,
                        })
                    })
                });
            }
            let right_keys: BTreeSet<String> = bench
                .drives
                .iter()
                .flat_map(|d| plot_cfg.right_signals.iter().map(move |s| format!("{}.{}", d.name(), s)))
                .collect();
            let label_map = map.clone();
            let label_units = (unit.clone(), right_unit.clone());
            let draw = DrawInputs {
                bench,
                plot_cfg: &plot_cfg,
                view,
                follow: self.follow,
                pending: self.pending_range.is_some(),
                fit_y: self.fit_y || self.follow || self.pending_range.is_some(),
                width_px,
                hidden: &self.hidden,
                cursors: self.cursors.shown.then_some((self.cursors.a_s, self.cursors.b_s)),
                trigger: trigger_mark.clone(),
                map: map.clone(),
            };
            let buf = &mut self.buf;
            let mut plot_points = 0;
            let response = Plot::new(("plot", pi))
                .height(height)
                .link_axis(group, [true, false])
                .link_cursor(group, [true, false])
                .auto_bounds(egui::Vec2b::FALSE)
                .allow_double_click_reset(false)
                .allow_drag(grab.is_none())
                .show_crosshair(true)
                .y_grid_spacer(nice_grid)
                .x_grid_spacer(nice_grid)
                .x_axis_formatter(|mark, _| grid_label(mark))
                .x_axis_label(if pi + 1 == n { "time [s]" } else { "" })
                .custom_y_axes(y_axes)
                .label_formatter(move |pos| {
                    let (unit, right_unit) = &label_units;
                    let map = label_map.get();
                    Some(match pos {
                        egui_plot::HoverPosition::NearDataPoint { plot_name, position, .. } => {
                            let (v, u) = if right_keys.contains(*plot_name) {
                                (map.to_right(position.y), right_unit)
                            } else {
                                (position.y, unit)
                            };
                            format!("{plot_name}\nt = {:.4} s\n{} {u}", position.x, format_value(v))
                        }
                        egui_plot::HoverPosition::Elsewhere { position } if !right_keys.is_empty() => {
                            format!(
                                "t = {:.4} s\n{} {unit}\n{} {right_unit}",
                                position.x,
                                format_value(position.y),
                                format_value(map.to_right(position.y))
                            )
                        }
                        egui_plot::HoverPosition::Elsewhere { position } => {
                            format!("t = {:.4} s\n{} {unit}", position.x, format_value(position.y))
                        }
                    })
                })
                .show(ui, |pui| draw_plot(pui, &draw, buf, &mut plot_points, &mut gaps));
            points += plot_points;
            self.right_maps[pi] = map.get();
            let r = &response.response;
            self.frames[pi] = (*response.transform.frame(), *response.transform.bounds());
            stack_rect = stack_rect.union(r.rect);
            if let Some(h) = response.inner {
                hover = Some(h);
            }
            let scrolled = r.hovered()
                && ui.input(|i| i.smooth_scroll_delta != egui::Vec2::ZERO || i.zoom_delta() != 1.0);
            if (r.dragged() && grab.is_none()) || scrolled {
                interacted = true;
            }
            if self.cursors.shown
                && r.clicked()
                && !self.press_on_cursor
                && let Some(pos) = r.interact_pointer_pos()
            {
                let t_s = response.transform.value_from_position(pos).x;
                let id = if ui.input(|i| i.modifiers.shift) { CursorId::B } else { CursorId::A };
                self.cursors.set(id, t_s);
            }
            if r.double_clicked() {
                self.follow = true;
            }
        }
        if let Some(i) = remove {
            self.plots.remove(i);
            self.right_maps.remove(i);
        }
        self.fit_y = false;
        self.pending_range = None;
        if interacted && self.follow {
            // Panning or zooming means the user wants to look around: stop following.
            self.follow = false;
        }
        self.hover = hover;
        self.points_last_frame = points;
        self.gaps_last_frame = gaps;
        self.stack_rect = Some(stack_rect);
        self.frames.truncate(self.plots.len());
        self.view_s = self.frames.first().map(|(_, b)| (b.min()[0], b.max()[0]));
    }

    /// Cursor lines can be dragged in any plot: near one, the pointer grabs it instead of
    /// panning. Uses last frame's plot rectangles (the layout barely moves between frames).
    /// Returns the cursor being dragged or under the pointer.
    fn grab_cursor(&mut self, ui: &egui::Ui) -> Option<CursorId> {
        if !self.cursors.shown {
            self.dragging = None;
            return None;
        }
        let (pos, pressed, down) =
            ui.input(|i| (i.pointer.hover_pos(), i.pointer.primary_pressed(), i.pointer.primary_down()));
        let near = pos.and_then(|p| {
            self.frames.iter().find(|(r, _)| r.contains(p))?;
            [(CursorId::A, self.cursors.a_s), (CursorId::B, self.cursors.b_s)]
                .into_iter()
                .filter_map(|(id, t)| Some((id, (self.time_to_x(t)? - p.x).abs())))
                .filter(|(_, d)| *d <= CURSOR_GRAB_PX)
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(id, _)| id)
        });
        if pressed {
            self.dragging = near;
            self.press_on_cursor = near.is_some();
        }
        if !down && !pressed {
            self.dragging = None;
        }
        if let (Some(id), Some(p)) = (self.dragging, pos)
            && let Some((rect, b)) = self.frames.iter().find(|(r, _)| r.width() > 0.0)
        {
            let t = b.min()[0] + ((p.x - rect.left()) / rect.width()) as f64 * b.width();
            self.cursors.set(id, t);
        }
        let grab = self.dragging.or(near);
        if grab.is_some() {
            ui.ctx().set_cursor_icon(egui::CursorIcon::ResizeHorizontal);
        }
        grab
    }

    fn plot_header_ui(
        &mut self,
        ui: &mut egui::Ui,
        pi: usize,
        plot_cfg: &PlotConfig,
        all_signals: &[String],
        n: usize,
        remove: &mut Option<usize>,
    ) {
        ui.label(RichText::new(&plot_cfg.title).strong());
        // Several boxes are ticked in a row: the menu stays open until a click outside it.
        let config = egui::containers::menu::MenuConfig::new()
            .close_behavior(egui::PopupCloseBehavior::CloseOnClickOutside);
        egui::containers::menu::MenuButton::new("Signals…").config(config).ui(ui, |ui| {
            ui.label(RichText::new("Shown in this plot, and on which value axis").weak());
            egui::Grid::new(("signals", pi)).num_columns(2).show(ui, |ui| {
                for name in all_signals {
                    let mut on = plot_cfg.signals.contains(name);
                    let mut right = plot_cfg.on_right(name);
                    let cfg = &mut self.plots[pi];
                    if ui.checkbox(&mut on, name).changed() {
                        if on {
                            cfg.signals.push(name.clone());
                        } else {
                            cfg.signals.retain(|s| s != name);
                            cfg.right_signals.retain(|s| s != name);
                        }
                    }
                    let tip = "Draw it against a second value axis on the right, with its own scale";
                    if ui
                        .add_enabled(on, egui::Checkbox::new(&mut right, "right axis"))
                        .on_hover_text(tip)
                        .changed()
                    {
                        cfg.right_signals.retain(|s| s != name);
                        if right {
                            cfg.right_signals.push(name.clone());
                        }
                        // The right axis needs a scale that fits its data.
                        self.fit_y = true;
                    }
                    ui.end_row();
                }
            });
        });
        if !plot_cfg.right_signals.is_empty() {
            let names = plot_cfg.right_signals.join(", ");
            ui.label(RichText::new(format!("right axis: {names}")).weak().small());
        }
        if n > 1 && ui.small_button("✖").on_hover_text("Remove this plot").clicked() {
            *remove = Some(pi);
        }
    }

    fn toolbar_ui(&mut self, ui: &mut egui::Ui, bench: &Bench) {
        // Wrapped: a row wider than the panel would widen the whole plot stack past its edge.
        ui.horizontal_wrapped(|ui| {
            let (text, tip) = if self.follow {
                ("⏸ Pause", "Freeze the view to pan and zoom through the history (or just drag the plot)")
            } else {
                ("▶ Follow", "Follow the newest data (or double-click a plot)")
            };
            if ui.button(text).on_hover_text(tip).clicked() {
                self.follow = !self.follow;
            }
            let label = ui.label("Window:");
            ui.add(egui::DragValue::new(&mut self.window_s).range(0.1..=3600.0).speed(0.1).suffix(" s"))
                .labelled_by(label.id);
            if !self.follow && ui.button("Fit Y").clicked() {
                self.fit_y = true;
            }
            if ui
                .button("Whole history")
                .on_hover_text("Pause and show every stored sample; zoom in with Ctrl+scroll")
                .clicked()
            {
                self.show_whole_history(bench);
            }
            if ui.button("Add plot").clicked() {
                let first = signal_names(bench).into_iter().next().unwrap_or_default();
                let title = format!("Plot {}", self.plots.len() + 1);
                self.plots.push(PlotConfig::new(&title, "", vec![first]));
            }
            // Following is what the Pause button says; paused, say how to look around.
            if !self.follow {
                ui.label(RichText::new("paused — drag to pan, Ctrl+scroll to zoom").weak());
            }
        });
    }

    /// One toggle per trace: click to show or hide it in every plot.
    fn legend_ui(&mut self, ui: &mut egui::Ui, bench: &Bench) {
        let mut signals: Vec<&String> = Vec::new();
        for p in &self.plots {
            for s in &p.signals {
                if !signals.contains(&s) {
                    signals.push(s);
                }
            }
        }
        let mut toggled = None;
        ui.horizontal_wrapped(|ui| {
            for (di, d) in bench.drives.iter().enumerate() {
                for s in &signals {
                    if d.telemetry().series(s).is_none() {
                        continue;
                    }
                    let key = format!("{}.{}", d.name(), s);
                    let mut shown = !self.hidden.contains(&key);
                    let color = if shown { drive_color(di) } else { ui.visuals().weak_text_color() };
                    let style = if s.contains("setpoint") { "dashed" } else { "solid" };
                    let text = RichText::new(&key).color(color);
                    if ui
                        .checkbox(&mut shown, text)
                        .on_hover_text(format!("Show or hide this trace ({style})"))
                        .changed()
                    {
                        toggled = Some(key);
                    }
                }
            }
        });
        if let Some(key) = toggled
            && !self.hidden.remove(&key)
        {
            self.hidden.insert(key);
        }
    }

    fn readout_ui(&self, ui: &mut egui::Ui) {
        let text = match &self.hover {
            Some(h) => {
                let mut s = format!("t = {:.4} s", h.t_s);
                for (name, v, unit) in &h.values {
                    s.push_str(&format!("   {name} = {v:.3} {unit}"));
                }
                s
            }
            None => "hover a plot to read values".into(),
        };
        ui.label(RichText::new(text).monospace().small());
    }
}

/// What one plot needs to draw itself.
struct DrawInputs<'b> {
    bench: &'b Bench,
    plot_cfg: &'b PlotConfig,
    view: (f64, f64),
    follow: bool,
    pending: bool,
    fit_y: bool,
    width_px: usize,
    hidden: &'b BTreeSet<String>,
    cursors: Option<(f64, f64)>,
    trigger: Option<TriggerMark>,
    map: Rc<Cell<AxisMap>>,
}

/// One trace's decimated points, before right-axis ones are mapped onto the plot's scale.
struct TracePoints {
    key: String,
    points: Vec<[f64; 2]>,
    right: bool,
    color: Color32,
    setpoint: bool,
}

/// Draws one plot's traces, cursors and trigger marks; returns the hover readout.
fn draw_plot(
    pui: &mut egui_plot::PlotUi<'_>,
    d: &DrawInputs<'_>,
    buf: &mut Vec<[f64; 2]>,
    points: &mut usize,
    gaps: &mut Vec<(String, f64, f64)>,
) -> Option<HoverReadout> {
    let (t0, t1) = d.view;
    if d.follow || d.pending {
        pui.set_plot_bounds_x(t0..=t1);
    }
    let mut left_range: Option<(f64, f64)> = None;
    let mut right_range: Option<(f64, f64)> = None;
    let mut traces = Vec::new();
    let mut readout = Vec::new();
    let pointer_t = pui.pointer_coordinate().map(|p| p.x);
    // Link-lost intervals of the drives with a trace in this plot: drive, start, end.
    let mut lost = Vec::new();
    for (di, drive) in d.bench.drives.iter().enumerate() {
        let telemetry = drive.telemetry();
        let mut shown = false;
        for signal in &d.plot_cfg.signals {
            let key = format!("{}.{}", drive.name(), signal);
            if d.hidden.contains(&key) {
                continue;
            }
            let Some(series) = telemetry.series(signal) else { continue };
            shown = true;
            series.view(t0, t1, d.width_px, buf);
            if buf.is_empty() {
                continue;
            }
            *points += buf.len();
            let right = d.plot_cfg.on_right(signal);
            // A saturated reading can be ±inf: it is drawn, but cannot size the axis.
            if d.fit_y
                && let Some((lo, hi)) = series.min_max(t0, t1)
                && lo.is_finite()
                && hi.is_finite()
            {
                let range = if right { &mut right_range } else { &mut left_range };
                *range = Some(match *range {
                    Some((a, b)) => (a.min(lo), b.max(hi)),
                    None => (lo, hi),
                });
            }
            if let Some(t) = pointer_t
                && let Some((_, v)) = series.nearest(t)
            {
                let unit = telemetry.unit(signal).unwrap_or("").to_owned();
                readout.push((key.clone(), v, unit));
            }
            let setpoint = signal.contains("setpoint");
            traces.push(TracePoints { key, points: buf.clone(), right, color: drive_color(di), setpoint });
        }
        if shown {
            lost.extend(telemetry.gaps_in(t0, t1).map(|(start, end)| (drive.name(), start, end)));
        }
    }
    let mut map = d.map.get();
    let mut y_bounds = None;
    if d.fit_y {
        let with_margin = |(lo, hi): (f64, f64)| {
            let margin = ((hi - lo) * 0.08).max(1e-3 * hi.abs().max(lo.abs())).max(1e-6);
            (lo - margin, hi + margin)
        };
        y_bounds = match (left_range.map(with_margin), right_range) {
            (Some(left), Some(right)) => {
                map = AxisMap::fit(left, right);
                Some(left)
            }
            (Some(left), None) => Some(left),
            (None, Some(right)) => {
                map = AxisMap::IDENTITY;
                Some(with_margin(right))
            }
            (None, None) => None,
        };
        if let Some((lo, hi)) = y_bounds {
            pui.set_plot_bounds_y(lo..=hi);
        }
        d.map.set(map);
    }
    for mut t in traces {
        if t.right {
            for p in &mut t.points {
                p[1] = map.to_plot(p[1]);
            }
        }
        // A NaN marks where the link was lost: the trace breaks there (egui_plot would join
        // across it, and refuses NaN positions in debug builds).
        for (part, points) in
            t.points.split(|p| p[0].is_nan() || p[1].is_nan()).filter(|p| !p.is_empty()).enumerate()
        {
            let line = Line::new(t.key.clone(), PlotPoints::new(points.to_vec())).id((t.key.as_str(), part));
            let line = if t.setpoint {
                line.color(t.color.gamma_multiply(0.8)).style(LineStyle::dashed_loose()).width(1.2)
            } else {
                line.color(t.color).width(1.5)
            };
            pui.line(line);
        }
    }
    // Where a drive drawn here had lost its link: shaded, named at the top.
    for (name, start, end) in lost {
        let end = end.unwrap_or(t1.max(start));
        gaps.push((name.to_owned(), start, end));
        pui.span(
            Span::new(format!("{name} link lost"), start..=end)
                .fill(GAP_COLOR.gamma_multiply(0.12))
                .border(Stroke::new(1.0, GAP_COLOR.gamma_multiply(0.5))),
        );
    }
    let y_top = y_bounds.map_or_else(|| pui.plot_bounds().max()[1], |b| b.1);
    if let Some((a_s, b_s)) = d.cursors {
        for (name, t, color) in [("A", a_s, CURSOR_A_COLOR), ("B", b_s, CURSOR_B_COLOR)] {
            pui.vline(VLine::new(format!("cursor {name}"), t).color(color).width(1.5).allow_hover(false));
            pui.text(
                Text::new(
                    format!("cursor {name} label"),
                    PlotPoint::new(t, y_top),
                    RichText::new(name).strong(),
                )
                .color(color)
                .anchor(Align2::LEFT_TOP)
                .allow_hover(false),
            );
        }
    }
    if let Some(mark) = &d.trigger {
        if let Some(t) = mark.t_s {
            pui.vline(
                VLine::new("trigger time", t)
                    .color(TRIGGER_COLOR)
                    .style(LineStyle::dashed_dense())
                    .width(1.2)
                    .allow_hover(false),
            );
            pui.text(
                Text::new("trigger label", PlotPoint::new(t, y_top), RichText::new("T").strong())
                    .color(TRIGGER_COLOR)
                    .anchor(Align2::RIGHT_TOP)
                    .allow_hover(false),
            );
        }
        if let Some((drive, signal)) = split_key(&mark.source)
            && d.plot_cfg.signals.iter().any(|s| s == signal)
            && d.bench.by_name(drive).is_some()
        {
            let y = if d.plot_cfg.on_right(signal) { map.to_plot(mark.level) } else { mark.level };
            pui.hline(
                HLine::new("trigger level", y)
                    .color(TRIGGER_COLOR.gamma_multiply(0.7))
                    .style(LineStyle::dashed_dense())
                    .width(1.0)
                    .allow_hover(false),
            );
        }
    }
    pointer_t.map(|t| HoverReadout { t_s: t, values: readout })
}

/// The units of a plot's right-axis signals, as the drives announce them.
fn right_axis_unit(bench: &Bench, plot: &PlotConfig) -> String {
    let mut units: Vec<&str> = Vec::new();
    for s in &plot.right_signals {
        for d in &bench.drives {
            if let Some(u) = d.signal_unit(s)
                && !u.is_empty()
                && !units.contains(&u)
            {
                units.push(u);
            }
        }
    }
    units.join(", ")
}

/// A grid label with the decimals its step needs: 2.5 on a 0.5 step, 2 on a 1 step.
fn grid_label(mark: egui_plot::GridMark) -> String {
    let decimals = (-mark.step_size.log10().floor()).clamp(0.0, 12.0) as usize;
    let s = format!("{:.decimals$}", mark.value);
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') { s[1..].to_owned() } else { s }
}

/// Grid lines on nested 1-2-5 steps (each step divides the next), so a ±8 A plot gets labels
/// at ±5 rather than only at 0, and labels never mix two spacings.
fn nice_grid(input: egui_plot::GridInput) -> Vec<egui_plot::GridMark> {
    let (lo, hi) = input.bounds;
    if !(input.base_step_size > 0.0 && lo.is_finite() && hi.is_finite() && hi > lo) {
        return Vec::new();
    }
    let decade = 10f64.powf(input.base_step_size.log10().floor());
    let fine = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * decade).find(|s| *s >= input.base_step_size);
    let fine = fine.unwrap_or(10.0 * decade);
    let mut steps = vec![fine];
    while steps.len() < 6 {
        let last = steps[steps.len() - 1];
        let mantissa = last / 10f64.powf(last.log10().floor());
        steps.push(if mantissa < 4.0 { last * 5.0 } else { last * 2.0 });
    }
    let first = (lo / fine).ceil() as i64;
    let last = (hi / fine).floor() as i64;
    if last - first > 10_000 {
        return Vec::new();
    }
    (first..=last)
        .map(|i| {
            let value = i as f64 * fine;
            let step_size = steps
                .iter()
                .rev()
                .find(|s| ((value / **s).round() * **s - value).abs() < fine * 1e-6)
                .copied()
                .unwrap_or(fine);
            egui_plot::GridMark { value, step_size }
        })
        .collect()
}

/// Every signal name any drive announces, in first-seen order.
fn signal_names(bench: &Bench) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for d in &bench.drives {
        for s in &d.signals {
            if !names.contains(&s.name) {
                names.push(s.name.clone());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(value: f64, step_size: f64) -> String {
        grid_label(egui_plot::GridMark { value, step_size })
    }

    #[test]
    fn grid_labels_carry_the_decimals_of_their_step() {
        assert_eq!(label(2.5, 0.5), "2.5");
        assert_eq!(label(-0.5, 0.5), "-0.5");
        assert_eq!(label(2.0, 1.0), "2");
        assert_eq!(label(1500.0, 500.0), "1500");
        assert_eq!(label(0.02, 0.01), "0.02");
        assert_eq!(label(-0.0, 0.1), "0.0");
    }
}
