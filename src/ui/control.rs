//! Control panel for the selected drive: connect, enable/disable, fault reset, mode, setpoint
//! entry with slider and jog buttons, and live readouts. Every setpoint goes through the
//! drive's limit check; a refused value is shown with its reason and not sent.

use egui::{Color32, RichText};

use crate::bench::DriveRuntime;
use crate::drive::{Command, ControlMode, DriveState};

use super::drive_list::state_color;

pub struct ControlPanel {
    /// Text in the setpoint field, per drive id.
    setpoint_text: String,
    text_for: Option<(u64, ControlMode)>,
    jog_step: f64,
    /// Last refusal shown under the setpoint controls.
    error: Option<String>,
}

impl Default for ControlPanel {
    fn default() -> Self {
        ControlPanel { setpoint_text: "0".into(), text_for: None, jog_step: 100.0, error: None }
    }
}

impl ControlPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, drive: &mut DriveRuntime) {
        let focused = ui.memory(|m| m.focused()).is_some_and(|id| id == setpoint_field_id());
        if !focused && self.text_for == Some((drive.id, drive.mode)) && self.error.is_none() {
            // Follow the drive's setpoint (jog, slider, script) while the user is not typing.
            self.setpoint_text = format_value(drive.setpoint);
        }
        if self.text_for != Some((drive.id, drive.mode)) {
            self.text_for = Some((drive.id, drive.mode));
            self.setpoint_text = format_value(drive.setpoint);
            self.jog_step = default_jog(drive.mode);
            self.error = None;
        }
        ui.horizontal(|ui| {
            ui.heading(drive.name());
            ui.label(RichText::new(drive.state.label()).color(state_color(&drive.state)));
            if let Some(status) = &drive.status {
                ui.label(RichText::new(status).small().weak());
            }
        });
        let connected = drive.state.is_connected();
        if let Some(path) = &drive.recorded_from {
            ui.label(format!("Recorded in {}: browse it in the plots (pause, drag, zoom).", path.display()));
            ui.add_space(6.0);
            self.readouts_ui(ui, drive);
            return;
        }
        if !drive.can_control() {
            ui.label("Telemetry only: this protocol cannot command the drive. Use the console to send text.");
            ui.add_space(6.0);
            self.readouts_ui(ui, drive);
            return;
        }
        ui.horizontal(|ui| {
            if !drive.is_running() {
                ui.label("Not connected: use Connect in the drive list.");
                return;
            }
            let enabled = drive.state == DriveState::Enabled;
            let enable = egui::Button::new(RichText::new("Enable").strong()).fill(if enabled {
                Color32::from_rgb(60, 120, 60)
            } else {
                ui.visuals().widgets.inactive.bg_fill
            });
            if ui.add_enabled(connected && !enabled, enable).clicked() {
                self.send(drive, Command::Enable);
            }
            if ui.add_enabled(connected, egui::Button::new("Disable")).clicked() {
                self.send(drive, Command::Disable);
            }
            let faulted = matches!(drive.state, DriveState::Fault(_));
            if ui.add_enabled(faulted, egui::Button::new("Reset fault")).clicked() {
                self.send(drive, Command::ResetFaults);
            }
        });

        ui.add_space(4.0);
        ui.horizontal(|ui| {
            ui.label("Mode:");
            for mode in ControlMode::ALL {
                if ui
                    .add_enabled(connected, egui::RadioButton::new(drive.mode == mode, mode.label()))
                    .clicked()
                    && drive.mode != mode
                {
                    self.send(drive, Command::SetMode(mode));
                }
            }
        });

        let unit = drive.mode.unit();
        let (min, max) = drive.config.limits.setpoint_range(drive.mode);
        ui.horizontal(|ui| {
            let label = ui.label("Setpoint:");
            let field = egui::TextEdit::singleline(&mut self.setpoint_text)
                .id(setpoint_field_id())
                .desired_width(80.0);
            let edit = ui.add_enabled(connected, field).labelled_by(label.id);
            ui.label(unit);
            let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.add_enabled(connected, egui::Button::new("Apply")).clicked() || entered {
                match parse_number(&self.setpoint_text) {
                    Ok(v) => self.send(drive, Command::SetSetpoint(drive.mode, v)),
                    Err(e) => self.error = Some(e),
                }
            }
        });
        let mut slider_value = drive.setpoint.clamp(min, max);
        let slider =
            egui::Slider::new(&mut slider_value, min..=max).suffix(format!(" {unit}")).text("slider");
        if ui.add_enabled(connected, slider).changed() {
            self.send(drive, Command::SetSetpoint(drive.mode, slider_value));
            self.setpoint_text = format_value(slider_value);
        }
        ui.horizontal(|ui| {
            ui.label("Jog:");
            let step = self.jog_step;
            for (text, delta) in [("−−", -10.0 * step), ("−", -step), ("+", step), ("++", 10.0 * step)]
            {
                if ui
                    .add_enabled(connected, egui::Button::new(text))
                    .on_hover_text(format!("{delta:+} {unit}"))
                    .clicked()
                {
                    let target = drive.setpoint + delta;
                    self.send(drive, Command::SetSetpoint(drive.mode, target));
                    self.setpoint_text = format_value(drive.setpoint);
                }
            }
            if ui.add_enabled(connected, egui::Button::new("0")).on_hover_text("Setpoint to zero").clicked() {
                let target = if drive.mode == ControlMode::Position { drive.setpoint } else { 0.0 };
                self.send(drive, Command::SetSetpoint(drive.mode, target));
                self.setpoint_text = format_value(drive.setpoint);
            }
            let label = ui.label("step");
            ui.add(egui::DragValue::new(&mut self.jog_step).range(0.0..=max.abs().max(min.abs())).speed(1.0))
                .labelled_by(label.id);
        });
        ui.label(RichText::new(format!("allowed {min} … {max} {unit} (project limits)")).small().weak());
        if let Some(err) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, err);
        }

        ui.add_space(6.0);
        self.readouts_ui(ui, drive);
        if let Some(msg) = drive.last_message() {
            ui.add_space(4.0);
            ui.label(RichText::new(format!("last message: {msg}")).small().weak());
        }
    }

    fn send(&mut self, drive: &mut DriveRuntime, cmd: Command) {
        self.error = drive.send(cmd).err().map(|e| e.to_string());
    }

    fn readouts_ui(&self, ui: &mut egui::Ui, drive: &DriveRuntime) {
        let telemetry = drive.telemetry();
        egui::Grid::new(("readouts", drive.id)).num_columns(3).striped(true).show(ui, |ui| {
            for (name, label) in CANONICAL {
                let Some(series) = telemetry.series(name) else { continue };
                ui.label(label);
                let value = series.last().map(|(_, v)| format!("{v:.3}")).unwrap_or_else(|| "—".into());
                ui.monospace(value);
                ui.label(drive.signal_unit(name).unwrap_or(""));
                ui.end_row();
            }
            // A telemetry-only drive's signals are whatever the sketch prints: show them all.
            if !drive.can_control() {
                for (signal, series) in telemetry.iter() {
                    if CANONICAL.iter().any(|(n, _)| *n == signal.name) {
                        continue;
                    }
                    ui.label(&signal.name);
                    let value = series.last().map(|(_, v)| format!("{v:.3}")).unwrap_or_else(|| "—".into());
                    ui.monospace(value);
                    ui.label(&signal.unit);
                    ui.end_row();
                }
            }
        });
    }
}

/// The readouts every drive gets, when it has the signal.
const CANONICAL: [(&str, &str); 5] = [
    ("speed_rpm", "Speed"),
    ("current_a", "Current"),
    ("position_rev", "Position"),
    ("voltage_v", "Bus voltage"),
    ("temperature_c", "Temperature"),
];

/// The setpoint field's id: one control panel, one field.
fn setpoint_field_id() -> egui::Id {
    egui::Id::unique("drivebench-setpoint-field")
}

fn default_jog(mode: ControlMode) -> f64 {
    match mode {
        ControlMode::Current => 0.5,
        ControlMode::Speed => 100.0,
        ControlMode::Position => 1.0,
    }
}

/// A value with six significant digits and no trailing zeros.
pub fn format_value(v: f64) -> String {
    crate::drive::format_significant(v, 6)
}

/// Parses a number typed by the user; a clear message otherwise.
pub fn parse_number(text: &str) -> Result<f64, String> {
    let t = text.trim().replace(',', ".");
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("`{}` is not a finite number", text.trim())),
        Err(_) => Err(format!("`{}` is not a number", text.trim())),
    }
}
