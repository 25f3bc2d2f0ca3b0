//! The history setting: how many samples each signal keeps for scrolling back (a project
//! setting), with the memory it takes now and would take.

use egui::RichText;

use crate::bench::Bench;
use crate::project::History;

/// Bytes per stored sample, raw ring plus min/max levels (see `telemetry::series`).
const BYTES_PER_SAMPLE: f64 = 17.5;

#[derive(Default)]
pub struct HistoryDialog {
    pub open: bool,
    /// Minutes at 1 kHz being edited.
    minutes: f64,
}

impl HistoryDialog {
    pub fn show(&mut self, bench: &Bench) {
        self.open = true;
        self.minutes = bench.history_capacity() as f64 / 60_000.0;
    }

    /// Returns the new capacity (samples per signal) when the user applies one.
    pub fn ui(&mut self, ctx: &egui::Context, bench: &Bench) -> Option<usize> {
        if !self.open {
            return None;
        }
        let mut applied = None;
        let mut open = true;
        egui::Window::new("History").collapsible(false).resizable(false).open(&mut open).show(ctx, |ui| {
            let signals: usize =
                bench.drives.iter().filter(|d| !d.is_recorded()).map(|d| d.signals.len()).sum();
            ui.label("Every signal keeps its newest samples for scrolling back and zooming out.");
            ui.horizontal(|ui| {
                let label = ui.label("Keep:");
                let min = History::MIN_SAMPLES as f64 / 60_000.0;
                let max = History::MAX_SAMPLES as f64 / 60_000.0;
                ui.add(egui::DragValue::new(&mut self.minutes).range(min..=max).speed(0.5).suffix(" min"))
                    .labelled_by(label.id);
                ui.label("at 1 kHz per signal");
            });
            let samples = (self.minutes * 60_000.0).round() as usize;
            let samples = samples.clamp(History::MIN_SAMPLES, History::MAX_SAMPLES);
            let planned = samples as f64 * signals as f64 * BYTES_PER_SAMPLE / 1e6;
            ui.label(format!(
                "{samples} samples per signal × {signals} signals ≈ {planned:.0} MB (now {:.0} MB in use)",
                bench.memory_bytes() as f64 / 1e6
            ));
            if samples < bench.history_capacity() {
                ui.label(
                    RichText::new("Shrinking drops the oldest samples.").color(ui.visuals().warn_fg_color),
                );
            }
            ui.horizontal(|ui| {
                if ui.button("Apply").clicked() {
                    applied = Some(samples);
                    self.open = false;
                }
                if ui.button("Cancel").clicked() {
                    self.open = false;
                }
            });
        });
        if !open {
            self.open = false;
        }
        applied
    }
}
