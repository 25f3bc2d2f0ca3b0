//! The drive list: every drive with its state, selection, connect/disconnect, rename, remove,
//! and adding a simulated or serial drive.

use egui::{Color32, RichText};

use crate::bench::Bench;
use crate::drive::DriveState;

/// Colour for a drive state, used wherever a state is shown.
pub fn state_color(state: &DriveState) -> Color32 {
    match state {
        DriveState::Disconnected => Color32::GRAY,
        DriveState::Connecting => Color32::from_rgb(120, 160, 220),
        DriveState::Idle => Color32::from_rgb(90, 170, 90),
        DriveState::Enabled => Color32::from_rgb(240, 170, 40),
        DriveState::Fault(_) => Color32::from_rgb(230, 60, 60),
        DriveState::LinkLost { .. } => Color32::from_rgb(200, 110, 230),
    }
}

/// A small filled circle in the state's colour (drawn, so it needs no font glyph).
pub fn state_dot(ui: &mut egui::Ui, state: &DriveState) -> egui::Response {
    let (rect, response) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
    ui.painter().circle_filled(rect.center(), 5.0, state_color(state));
    response
}

/// What the user asked the drive list for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListAction {
    AddSimulated,
    AddSerial,
}

#[derive(Default)]
pub struct DriveListPanel {
    /// Drive being renamed and the text typed so far.
    renaming: Option<(u64, String)>,
    rename_error: Option<String>,
}

impl DriveListPanel {
    /// Returns what the user asked for (a new drive), if anything.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        bench: &mut Bench,
        selected: &mut Option<u64>,
    ) -> Option<ListAction> {
        ui.heading("Drives");
        let mut remove = None;
        let mut toggle_connect = None;
        let mut reconnect = None;
        let mut auto_reconnect = None;
        let mut rename_done = None;
        for (i, d) in bench.drives.iter().enumerate() {
            ui.push_id(d.id, |ui| {
                ui.horizontal(|ui| {
                    state_dot(ui, &d.state).on_hover_text(d.state.label());
                    match &mut self.renaming {
                        Some((id, text)) if *id == d.id => {
                            let label = ui.label("Name:");
                            let edit = ui
                                .add(egui::TextEdit::singleline(text).desired_width(100.0))
                                .labelled_by(label.id);
                            if edit.lost_focus() || ui.button("OK").clicked() {
                                rename_done = Some((i, text.clone()));
                            }
                            edit.request_focus();
                        }
                        _ => {
                            let is_selected = *selected == Some(d.id);
                            let r = ui.selectable_label(is_selected, RichText::new(d.name()).strong());
                            if r.clicked() {
                                *selected = Some(d.id);
                            }
                            if r.double_clicked() {
                                self.renaming = Some((d.id, d.name().to_owned()));
                            }
                        }
                    }
                });
                ui.horizontal(|ui| {
                    ui.add_space(16.0);
                    if d.is_recorded() {
                        ui.label(RichText::new("recorded (read only)").small().italics());
                        return;
                    }
                    let state_text = match &d.state {
                        DriveState::Fault(t) => format!("fault: {t}"),
                        s => s.label(),
                    };
                    ui.label(RichText::new(state_text).small().color(state_color(&d.state)));
                });
                ui.horizontal(|ui| {
                    ui.add_space(16.0);
                    if d.is_recorded() {
                        if ui.small_button("Remove").on_hover_text("Close this recording").clicked() {
                            remove = Some(i);
                        }
                        return;
                    }
                    let hint = if d.config.auto_reconnect {
                        "Try now (drivebench also retries by itself, with growing pauses)"
                    } else {
                        "Try now (retrying by itself is off for this drive)"
                    };
                    if matches!(d.state, DriveState::LinkLost { .. })
                        && ui.small_button("Reconnect").on_hover_text(hint).clicked()
                    {
                        reconnect = Some(i);
                    }
                    let connect_text = if d.is_running() { "Disconnect" } else { "Connect" };
                    if ui.small_button(connect_text).clicked() {
                        toggle_connect = Some(i);
                    }
                    if ui.small_button("Rename").clicked() {
                        self.renaming = Some((d.id, d.name().to_owned()));
                    }
                    if ui
                        .small_button("Remove")
                        .on_hover_text("Disable, disconnect and remove this drive")
                        .clicked()
                    {
                        remove = Some(i);
                    }
                });
                let source = match &d.recorded_from {
                    Some(path) => path.display().to_string(),
                    None => d.config.connection.describe(),
                };
                ui.label(RichText::new(source).small().weak());
                if d.config.connection.serial().is_some() && !d.is_recorded() {
                    let mut on = d.config.auto_reconnect;
                    if ui
                        .checkbox(&mut on, RichText::new("Reconnect by itself").small())
                        .on_hover_text(
                            "When the link is lost, try again after 0.5 s, 1 s, 2 s … (every 5 s at most). \
                             A reconnected drive is never enabled by drivebench.",
                        )
                        .changed()
                    {
                        auto_reconnect = Some((i, on));
                    }
                }
                if let Some(identity) = &d.identity {
                    ui.label(RichText::new(identity).small().weak());
                }
            });
            ui.separator();
        }
        if let Some(err) = &self.rename_error {
            ui.colored_label(ui.visuals().error_fg_color, err);
        }
        if let Some((i, name)) = rename_done {
            self.rename(bench, i, name);
        }
        if let Some(i) = reconnect {
            bench.connect(i);
        }
        if let Some((i, on)) = auto_reconnect {
            bench.drives[i].set_auto_reconnect(on);
        }
        if let Some(i) = toggle_connect {
            if bench.drives[i].is_running() {
                bench.drives[i].disconnect();
            } else {
                bench.connect(i);
            }
        }
        if let Some(i) = remove {
            let id = bench.drives[i].id;
            bench.remove(i);
            if *selected == Some(id) {
                *selected = bench.drives.first().map(|d| d.id);
            }
        }
        ui.add_space(6.0);
        if ui.button("➕ Add simulated drive").clicked() {
            return Some(ListAction::AddSimulated);
        }
        if ui.button("➕ Add serial drive…").clicked() {
            return Some(ListAction::AddSerial);
        }
        None
    }

    fn rename(&mut self, bench: &mut Bench, index: usize, name: String) {
        let name = name.trim().to_owned();
        let taken = bench.drives.iter().enumerate().any(|(j, d)| j != index && d.config.name == name);
        self.rename_error = if name.is_empty() {
            Some("A drive needs a name.".into())
        } else if name.contains(['.', ',']) {
            Some("Drive names may not contain `.` or `,` (they name CSV columns).".into())
        } else if taken {
            Some(format!("Another drive is already named `{name}`."))
        } else {
            bench.drives[index].config.name = name;
            None
        };
        if self.rename_error.is_none() {
            self.renaming = None;
        }
    }
}
