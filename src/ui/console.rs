//! The console of a serial drive: the traffic on its link in both directions (timestamped,
//! text or hex, pausable, bounded) and a line to send raw commands. What the protocol
//! recognises in a raw line (a setpoint, a parameter write) is checked against the project
//! limits before it is sent, like any other command.

use egui::{Color32, RichText};

use crate::bench::DriveRuntime;
use crate::console::{as_hex, as_text};
use crate::drive::{Command, Direction};

#[derive(Default)]
pub struct ConsolePanel {
    pub hex: bool,
    pub line: String,
    /// Result of the last send: refusal reason, if any.
    pub error: Option<String>,
    /// Lines sent, newest last (Up/Down recall them).
    history: Vec<String>,
    recall: Option<usize>,
}

const RX_COLOR: Color32 = Color32::from_rgb(120, 190, 240);
const TX_COLOR: Color32 = Color32::from_rgb(240, 180, 90);

impl ConsolePanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, drive: &mut DriveRuntime) {
        ui.horizontal(|ui| {
            ui.strong(format!("Console — {}", drive.name()));
            ui.separator();
            ui.selectable_value(&mut self.hex, false, "Text");
            ui.selectable_value(&mut self.hex, true, "Hex");
            ui.separator();
            let paused = drive.console.paused();
            if ui.button(if paused { "▶ Resume capture" } else { "⏸ Pause capture" }).clicked() {
                drive.console.set_paused(!paused);
            }
            if ui.button("Clear").clicked() {
                drive.console.clear();
            }
            let mut info = format!("{} entries", drive.console.len());
            if drive.console.evicted() > 0 {
                info.push_str(&format!(", {} older dropped", drive.console.evicted()));
            }
            if paused {
                info.push_str(&format!(", paused: {} chunks not captured", drive.console.missed()));
            }
            ui.label(RichText::new(info).small().weak());
        });
        let row_height = ui.text_style_height(&egui::TextStyle::Monospace);
        let entries: Vec<_> = drive.console.entries().collect();
        let available = (ui.available_height() - 2.0 * row_height - 16.0).max(3.0 * row_height);
        egui::ScrollArea::vertical()
            .id_salt(("console", drive.id))
            .max_height(available)
            .auto_shrink([false, false])
            .stick_to_bottom(!drive.console.paused())
            .show_rows(ui, row_height, entries.len(), |ui, rows| {
                for e in &entries[rows] {
                    let (arrow, color) = match e.dir {
                        Direction::Rx => ("←", RX_COLOR),
                        Direction::Tx => ("→", TX_COLOR),
                    };
                    let body = if self.hex { as_hex(&e.bytes) } else { as_text(&e.bytes) };
                    ui.label(
                        RichText::new(format!("{:>10.4}  {arrow} {body}", e.t_s)).monospace().color(color),
                    );
                }
            });
        ui.horizontal(|ui| {
            let label = ui.label("Send:");
            let edit = ui
                .add(
                    egui::TextEdit::singleline(&mut self.line)
                        .desired_width(ui.available_width() - 70.0)
                        .font(egui::TextStyle::Monospace)
                        .hint_text("raw command, sent with the protocol's line end"),
                )
                .labelled_by(label.id);
            if edit.has_focus() {
                self.recall_keys(ui);
            }
            let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let connected = drive.state.is_connected();
            if (ui.add_enabled(connected, egui::Button::new("Send")).clicked() || entered) && connected {
                self.send(drive);
                edit.request_focus();
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        // A line refused by the limit check in the drive's worker.
        if let Some((_, m)) = drive.messages.back()
            && m.starts_with("console line")
        {
            ui.colored_label(ui.visuals().error_fg_color, m);
        }
    }

    /// Sends the typed line through the drive's checks.
    pub fn send(&mut self, drive: &mut DriveRuntime) {
        let text = self.line.trim().to_owned();
        if text.is_empty() {
            return;
        }
        match drive.send(Command::Raw(text.clone())) {
            Ok(()) => {
                self.error = None;
                self.line.clear();
                if self.history.last() != Some(&text) {
                    self.history.push(text);
                }
                self.recall = None;
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    fn recall_keys(&mut self, ui: &egui::Ui) {
        if self.history.is_empty() {
            return;
        }
        let (up, down) =
            ui.input(|i| (i.key_pressed(egui::Key::ArrowUp), i.key_pressed(egui::Key::ArrowDown)));
        if up {
            let i = self.recall.map_or(self.history.len() - 1, |i| i.saturating_sub(1));
            self.recall = Some(i);
            self.line = self.history[i].clone();
        } else if down {
            match self.recall {
                Some(i) if i + 1 < self.history.len() => {
                    self.recall = Some(i + 1);
                    self.line = self.history[i + 1].clone();
                }
                _ => {
                    self.recall = None;
                    self.line.clear();
                }
            }
        }
    }
}
