//! Live plots: a stack of plots on one shared time axis, every drive's traces with their
//! setpoints, a legend strip with per-trace show/hide, follow and paused modes, and a hover
//! readout. Each trace is handed to egui_plot already decimated (M4, ≤ 4 points per pixel
//! column), so the per-frame cost does not depend on how much history is stored.

use std::collections::BTreeSet;

use egui::{Color32, RichText};
use egui_plot::{Line, LineStyle, Plot, PlotPoints};

use crate::bench::Bench;
use crate::project::{PlotConfig, PlotLayout};

/// Trace colours, one per drive, in order.
const PALETTE: [Color32; 6] = [
    Color32::from_rgb(66, 135, 245),
    Color32::from_rgb(245, 130, 48),
    Color32::from_rgb(60, 180, 75),
    Color32::from_rgb(190, 80, 220),
    Color32::from_rgb(230, 60, 70),
    Color32::from_rgb(70, 200, 200),
];

pub fn drive_color(index: usize) -> Color32 {
    PALETTE[index % PALETTE.len()]
}

/// Values under the pointer, for the readout above the plots.
#[derive(Debug, Clone, Default)]
pub struct HoverReadout {
    pub t_s: f64,
    pub values: Vec<(String, f64, String)>,
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
    /// Signals of telemetry-only drives already given a place (a user may remove them again).
    placed: BTreeSet<String>,
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
            placed: BTreeSet::new(),
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
            trigger: Default::default(),
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, bench: &Bench) {
        self.place_new_signals(bench);
        self.toolbar_ui(ui, bench);
        self.legend_ui(ui, bench);
        self.readout_ui(ui);
        if self.plots.is_empty() {
            ui.label("No plots: use “Add plot”.");
            return;
        }
        let group = egui::Id::unique("drivebench-time-axis");
        let n = self.plots.len();
        let spacing = ui.spacing().item_spacing.y;
        // Each plot has a header row above it.
        let header = ui.spacing().interact_size.y + spacing;
        let height = ((ui.available_height() - (header + spacing) * n as f32) / n as f32).max(80.0);
        let now_s = bench.clock.now_s();
        let width_px = (ui.available_width() * ui.pixels_per_point()).max(1.0) as usize;
        let mut hover = None;
        let mut interacted = false;
        let mut points = 0;
        let mut remove = None;
        let all_signals = signal_names(bench);
        for pi in 0..n {
            let plot_cfg = self.plots[pi].clone();
            ui.horizontal(|ui| {
                ui.label(RichText::new(&plot_cfg.title).strong());
                ui.menu_button("Signals…", |ui| {
                    for name in &all_signals {
                        let mut on = plot_cfg.signals.contains(name);
                        if ui.checkbox(&mut on, name).changed() {
                            let sigs = &mut self.plots[pi].signals;
                            if on {
                                sigs.push(name.clone());
                            } else {
                                sigs.retain(|s| s != name);
                            }
                        }
                    }
                });
                if n > 1 && ui.small_button("✖").on_hover_text("Remove this plot").clicked() {
                    remove = Some(pi);
                }
            });
            let follow = self.follow;
            let window_s = self.window_s;
            let fit_y = self.fit_y || follow;
            let hidden = &self.hidden;
            let buf = &mut self.buf;
            let unit = plot_cfg.unit.clone();
            let response = Plot::new(("plot", pi))
                .height(height)
                .link_axis(group, [true, false])
                .link_cursor(group, [true, false])
                .auto_bounds(egui::Vec2b::FALSE)
                .allow_double_click_reset(false)
                .show_crosshair(true)
                .y_grid_spacer(nice_grid)
                .x_grid_spacer(nice_grid)
                .x_axis_formatter(|mark, _| grid_label(mark))
                .y_axis_formatter(|mark, _| grid_label(mark))
                .x_axis_label(if pi + 1 == n { "time [s]" } else { "" })
                .y_axis_label(unit.clone())
                // One width for every y axis, so that the linked time axes line up.
                .y_axis_min_width(64.0)
                .label_formatter(move |pos| {
                    let (name, p) = match pos {
                        egui_plot::HoverPosition::NearDataPoint { plot_name, position, .. } => {
                            (*plot_name, *position)
                        }
                        egui_plot::HoverPosition::Elsewhere { position } => ("", *position),
                    };
                    Some(format!("{name}\nt = {:.4} s\n{:.4} {unit}", p.x, p.y))
                })
                .show(ui, |pui| {
                    // plot_bounds() is last frame's view: when following, query the window
                    // being set now, so the newest samples count for drawing and y-scaling.
                    let (t0, t1) = if follow {
                        pui.set_plot_bounds_x((now_s - window_s)..=now_s);
                        (now_s - window_s, now_s)
                    } else {
                        let bounds = pui.plot_bounds();
                        (bounds.min()[0], bounds.max()[0])
                    };
                    let mut y_range: Option<(f64, f64)> = None;
                    let mut readout = Vec::new();
                    let pointer_t = pui.pointer_coordinate().map(|p| p.x);
                    for (di, drive) in bench.drives.iter().enumerate() {
                        for signal in &plot_cfg.signals {
                            let key = format!("{}.{}", drive.name(), signal);
                            if hidden.contains(&key) {
                                continue;
                            }
                            let telemetry = drive.telemetry();
                            let Some(series) = telemetry.series(signal) else { continue };
                            series.view(t0, t1, width_px, buf);
                            if buf.is_empty() {
                                continue;
                            }
                            points += buf.len();
                            // A saturated reading can be ±inf: it is drawn, but cannot size the axis.
                            if let Some((lo, hi)) = series.min_max(t0, t1)
                                && lo.is_finite()
                                && hi.is_finite()
                            {
                                y_range = Some(match y_range {
                                    Some((a, b)) => (a.min(lo), b.max(hi)),
                                    None => (lo, hi),
                                });
                            }
                            if let Some(t) = pointer_t
                                && let Some((_, v)) = series.nearest(t)
                            {
                                let unit = drive.signal_unit(signal).unwrap_or("").to_owned();
                                readout.push((key.clone(), v, unit));
                            }
                            let is_setpoint = signal.contains("setpoint");
                            let color = drive_color(di);
                            let line = Line::new(key.clone(), PlotPoints::new(buf.clone())).id(key.as_str());
                            let line = if is_setpoint {
                                line.color(color.gamma_multiply(0.8))
                                    .style(LineStyle::dashed_loose())
                                    .width(1.2)
                            } else {
                                line.color(color).width(1.5)
                            };
                            pui.line(line);
                        }
                    }
                    if fit_y && let Some((lo, hi)) = y_range {
                        let margin = ((hi - lo) * 0.08).max(1e-3 * hi.abs().max(lo.abs())).max(1e-6);
                        pui.set_plot_bounds_y((lo - margin)..=(hi + margin));
                    }
                    pointer_t.map(|t| HoverReadout { t_s: t, values: readout })
                });
            if let Some(h) = response.inner {
                hover = Some(h);
            }
            let r = &response.response;
            let scrolled = r.hovered()
                && ui.input(|i| i.smooth_scroll_delta != egui::Vec2::ZERO || i.zoom_delta() != 1.0);
            if r.dragged() || scrolled {
                interacted = true;
            }
            if r.double_clicked() {
                self.follow = true;
            }
        }
        if let Some(i) = remove {
            self.plots.remove(i);
        }
        self.fit_y = false;
        if interacted && self.follow {
            // Panning or zooming means the user wants to look around: stop following.
            self.follow = false;
        }
        self.hover = hover;
        self.points_last_frame = points;
    }

    fn toolbar_ui(&mut self, ui: &mut egui::Ui, bench: &Bench) {
        ui.horizontal(|ui| {
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
            if ui.button("Add plot").clicked() {
                let first = signal_names(bench).into_iter().next().unwrap_or_default();
                let title = format!("Plot {}", self.plots.len() + 1);
                self.plots.push(PlotConfig::new(&title, "", vec![first]));
            }
            ui.label(
                RichText::new(if self.follow {
                    "following"
                } else {
                    "paused — drag to pan, Ctrl+scroll to zoom"
                })
                .weak(),
            );
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

/// Grid lines on nested 1-2-5 steps (each step divides the next), so a ±8 A plot gets labels
/// at ±5 rather than only at 0, and labels never mix two spacings.
/// A grid label with the decimals its step needs: 2.5 on a 0.5 step, 2 on a 1 step.
fn grid_label(mark: egui_plot::GridMark) -> String {
    let decimals = (-mark.step_size.log10().floor()).clamp(0.0, 12.0) as usize;
    let s = format!("{:.decimals$}", mark.value);
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') { s[1..].to_owned() } else { s }
}

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
