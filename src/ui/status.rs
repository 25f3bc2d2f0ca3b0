//! Status bar: per-drive sample rate and dropped samples, telemetry memory, UI frame time.

use std::time::Duration;

use egui::RichText;

use crate::bench::Bench;

use super::drive_list::state_dot;

#[derive(Default)]
pub struct StatusBar {
    /// Smoothed CPU time of one UI frame, in milliseconds.
    pub frame_ms: f64,
    pub last_estop_s: Option<f64>,
}

impl StatusBar {
    pub fn frame_time(&mut self, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1e3;
        self.frame_ms = if self.frame_ms == 0.0 { ms } else { 0.95 * self.frame_ms + 0.05 * ms };
    }

    pub fn ui(&self, ui: &mut egui::Ui, bench: &Bench) {
        ui.horizontal_wrapped(|ui| {
            for d in &bench.drives {
                state_dot(ui, &d.state);
                let lost = d.dropped;
                let text = format!("{} {:.0} Hz · {} dropped", d.name(), d.rate_hz(), lost);
                let label = if lost > 0 {
                    RichText::new(text).color(ui.visuals().warn_fg_color)
                } else {
                    text.into()
                };
                ui.label(label);
                ui.separator();
            }
            let signals: usize = bench.drives.iter().map(|d| d.signals.len()).sum();
            let full = (bench.history_capacity() * signals) as f64 * 17.5 / 1e6;
            ui.label(format!("telemetry {:.1} MB", bench.memory_bytes() as f64 / 1e6)).on_hover_text(format!(
                "History: {} samples per signal ({:.1} min at 1 kHz), ≈ {full:.0} MB when full. Drives ▸ History… changes it.",
                bench.history_capacity(),
                bench.history_capacity() as f64 / 60_000.0
            ));
            ui.separator();
            ui.label(format!("frame {:.2} ms", self.frame_ms));
            if let Some(t) = self.last_estop_s {
                ui.separator();
                let slowest =
                    bench.drives.iter().filter_map(|d| d.estop_latencies_s.last().copied()).fold(None, |m: Option<f64>, l| {
                        Some(m.map_or(l, |m| m.max(l)))
                    });
                let text = match slowest {
                    Some(l) => format!("E-STOP at t = {t:.2} s · out to every drive within {:.1} ms", l * 1e3),
                    None => format!("E-STOP at t = {t:.2} s"),
                };
                ui.label(RichText::new(text).color(ui.visuals().error_fg_color));
            }
        });
    }
}
