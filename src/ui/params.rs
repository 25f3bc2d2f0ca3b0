//! Parameter editor for the selected drive: the drive's catalogue with names, units, ranges
//! and help; values read back from the drive; edits checked against the catalogue range and
//! the project limits before anything is sent.

use std::collections::BTreeMap;

use egui::RichText;

use crate::bench::DriveRuntime;
use crate::drive::Command;

use super::control::{format_value, parse_number};

#[derive(Default)]
pub struct ParamsPanel {
    /// Text typed per (drive id, key); absent means "show the drive's value".
    edits: BTreeMap<(u64, String), String>,
    /// Refusal per (drive id, key), shown beside the row until the next edit.
    errors: BTreeMap<(u64, String), String>,
}

impl ParamsPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, drive: &mut DriveRuntime) {
        ui.horizontal(|ui| {
            ui.heading("Parameters");
            if ui.add_enabled(drive.state.is_connected(), egui::Button::new("Read all")).clicked() {
                let _ = drive.send(Command::ReadAllParams);
            }
        });
        if drive.catalogue.is_empty() {
            match drive.params_note() {
                Some(note) if drive.state.is_connected() => {
                    ui.label(format!("No parameters: {note}."));
                }
                _ => {
                    ui.label("Connect the drive to read its parameters.");
                }
            }
            return;
        }
        let catalogue = drive.catalogue.clone();
        egui::Grid::new(("params", drive.id)).num_columns(3).striped(true).min_col_width(40.0).show(
            ui,
            |ui| {
                for spec in &catalogue {
                    let key = (drive.id, spec.key.clone());
                    let label = ui.label(&spec.label).on_hover_text(format!(
                        "{}\n\nkey: {}\nrange: {} … {} {}{}",
                        spec.help,
                        spec.key,
                        spec.min,
                        spec.max,
                        spec.unit,
                        if spec.read_only { "\nread-only" } else { "" }
                    ));
                    let current = drive.values.get(&spec.key).copied();
                    let shown = current.map(format_value).unwrap_or_else(|| "—".into());
                    if spec.read_only {
                        ui.monospace(shown);
                    } else {
                        let text = self.edits.entry(key.clone()).or_insert_with(|| shown.clone());
                        // Follow the drive's value while the user is not editing this field.
                        // A fixed size: in a grid cell, a desired width is clipped to last
                        // frame's column width and never grows.
                        let height = ui.spacing().interact_size.y;
                        let edit = ui
                            .add_sized([96.0, height], egui::TextEdit::singleline(text))
                            .labelled_by(label.id);
                        if !edit.has_focus()
                            && !edit.lost_focus()
                            && !self.errors.contains_key(&key)
                            && *text != shown
                        {
                            *text = shown.clone();
                        }
                        if edit.changed() {
                            self.errors.remove(&key);
                        }
                        if edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                            let typed = text.clone();
                            let result = parse_number(&typed).and_then(|v| {
                                drive
                                    .send(Command::WriteParam(spec.key.clone(), v))
                                    .map_err(|e| e.to_string())
                            });
                            match result {
                                Ok(()) => {
                                    self.errors.remove(&key);
                                }
                                Err(e) => {
                                    self.errors.insert(key.clone(), e);
                                }
                            }
                        }
                    }
                    ui.label(RichText::new(&spec.unit).weak());
                    ui.end_row();
                    if let Some(err) = self.errors.get(&key) {
                        ui.label("");
                        ui.colored_label(ui.visuals().error_fg_color, err);
                        ui.end_row();
                    }
                }
            },
        );
        ui.label(
            RichText::new("Type a value and press Enter to write it. Hover a name for help.").small().weak(),
        );
    }

    /// The refusal shown for a parameter, if any (tests).
    pub fn error_for(&self, drive_id: u64, key: &str) -> Option<&str> {
        self.errors.get(&(drive_id, key.to_owned())).map(String::as_str)
    }
}
