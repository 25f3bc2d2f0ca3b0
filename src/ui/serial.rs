//! The "Add serial drive" window: protocol, port (listed on demand, or typed — pseudo-terminals
//! from `drivebench emulate` are never listed), baud, framing, flow control and the protocol's
//! options.

use egui::RichText;

use crate::link::{FlowControl, PortInfo, SerialSettings, list_ports};
use crate::project::SerialConnection;
use crate::protocol::Protocol;

/// Baud rates offered in the list; any other rate can be typed.
pub const COMMON_BAUDS: [u32; 10] =
    [9_600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 921_600, 1_000_000, 2_000_000];
const FRAMINGS: [&str; 6] = ["8N1", "8E1", "8O1", "8N2", "7E1", "7O1"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolKind {
    Plotter,
    SimpleFoc,
    ODrive,
    Vesc,
    Modbus,
}

impl ProtocolKind {
    pub const ALL: [ProtocolKind; 5] = [
        ProtocolKind::SimpleFoc,
        ProtocolKind::ODrive,
        ProtocolKind::Vesc,
        ProtocolKind::Modbus,
        ProtocolKind::Plotter,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ProtocolKind::Plotter => "Serial Plotter (telemetry)",
            ProtocolKind::SimpleFoc => "SimpleFOC Commander",
            ProtocolKind::ODrive => "ODrive ASCII",
            ProtocolKind::Vesc => "VESC",
            ProtocolKind::Modbus => "Modbus RTU / CiA 402",
        }
    }
}

/// State of the window.
pub struct SerialDialog {
    pub open: bool,
    pub name: String,
    pub kind: ProtocolKind,
    pub port: String,
    pub baud_text: String,
    pub framing: String,
    pub flow: FlowControl,
    pub motor_text: String,
    pub axis: u8,
    pub checksum: bool,
    pub pole_pairs_text: String,
    pub unit_text: String,
    ports: Option<Result<Vec<PortInfo>, String>>,
    pub error: Option<String>,
}

impl Default for SerialDialog {
    fn default() -> Self {
        SerialDialog {
            open: false,
            name: String::new(),
            kind: ProtocolKind::SimpleFoc,
            port: String::new(),
            baud_text: "115200".into(),
            framing: "8N1".into(),
            flow: FlowControl::None,
            motor_text: "M".into(),
            axis: 0,
            checksum: false,
            pole_pairs_text: "7".into(),
            unit_text: "1".into(),
            ports: None,
            error: None,
        }
    }
}

impl SerialDialog {
    /// Opens the window with a suggested drive name; the port list is read once on opening.
    pub fn show_with_name(&mut self, name: String) {
        self.open = true;
        self.name = name;
        self.error = None;
        self.refresh_ports();
    }

    pub fn refresh_ports(&mut self) {
        self.ports = Some(list_ports());
    }

    /// The connection the form describes, or why it is not valid.
    pub fn connection(&self) -> Result<(String, SerialConnection), String> {
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            return Err("A drive needs a name.".into());
        }
        if name.contains(['.', ',']) {
            return Err("Drive names may not contain `.` or `,` (they name CSV columns).".into());
        }
        let port = self.port.trim();
        if port.is_empty() {
            return Err("Choose a port from the list or type its path (e.g. /dev/ttyUSB0).".into());
        }
        let baud: u32 = self.baud_text.trim().parse().ok().filter(|b| *b > 0).ok_or_else(|| {
            format!("Baud rate `{}` is not a positive whole number.", self.baud_text.trim())
        })?;
        let mut link = SerialSettings::new(port, baud);
        link.set_framing(&self.framing)?;
        link.flow_control = self.flow;
        let protocol = match self.kind {
            ProtocolKind::Plotter => Protocol::Plotter,
            ProtocolKind::SimpleFoc => {
                let mut chars = self.motor_text.trim().chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Protocol::SimpleFoc { motor: c },
                    _ => return Err("The SimpleFOC motor id is one letter (usually M).".into()),
                }
            }
            ProtocolKind::ODrive => Protocol::ODrive { axis: self.axis, checksum: self.checksum },
            ProtocolKind::Vesc => {
                let pole_pairs = self.pole_pairs_text.trim().parse().map_err(|_| {
                    format!("Pole pairs `{}` is not a whole number.", self.pole_pairs_text.trim())
                })?;
                Protocol::Vesc { pole_pairs }
            }
            ProtocolKind::Modbus => {
                let unit = self
                    .unit_text
                    .trim()
                    .parse()
                    .map_err(|_| format!("Unit address `{}` is not 1 to 247.", self.unit_text.trim()))?;
                Protocol::modbus(unit)
            }
        };
        protocol.validate()?;
        Ok((name, SerialConnection { link, protocol }))
    }

    /// Draws the window; returns the drive to add when the user confirms.
    pub fn ui(&mut self, ctx: &egui::Context) -> Option<(String, SerialConnection)> {
        if !self.open {
            return None;
        }
        let mut open = true;
        let mut result = None;
        egui::Window::new("Add serial drive").collapsible(false).resizable(false).open(&mut open).show(ctx, |ui| {
            egui::Grid::new("serial-form").num_columns(2).spacing([8.0, 6.0]).show(ui, |ui| {
                let label = ui.label("Name");
                ui.add(egui::TextEdit::singleline(&mut self.name).desired_width(200.0)).labelled_by(label.id);
                ui.end_row();

                ui.label("Protocol");
                egui::ComboBox::from_id_salt("serial-protocol").selected_text(self.kind.label()).show_ui(
                    ui,
                    |ui| {
                        for kind in ProtocolKind::ALL {
                            if ui.selectable_value(&mut self.kind, kind, kind.label()).changed() {
                                // Each family's usual line settings: Modbus RTU runs 19200 8E1.
                                let modbus = kind == ProtocolKind::Modbus;
                                self.baud_text = if modbus { "19200" } else { "115200" }.into();
                                self.framing = if modbus { "8E1" } else { "8N1" }.into();
                            }
                        }
                    },
                );
                ui.end_row();

                let label = ui.label("Port");
                ui.horizontal(|ui| {
                    ui.add(egui::TextEdit::singleline(&mut self.port).desired_width(150.0).hint_text("/dev/ttyUSB0"))
                        .labelled_by(label.id);
                    egui::ComboBox::from_id_salt("serial-ports").selected_text("list").width(50.0).show_ui(
                        ui,
                        |ui| match &self.ports {
                            Some(Ok(ports)) if !ports.is_empty() => {
                                for p in ports {
                                    let text = format!("{}  {}", p.path, p.description);
                                    if ui.selectable_label(self.port == p.path, text).clicked() {
                                        self.port = p.path.clone();
                                    }
                                }
                            }
                            Some(Ok(_)) => {
                                ui.label("No serial ports found.");
                            }
                            Some(Err(e)) => {
                                ui.label(e);
                            }
                            None => {
                                ui.label("Not listed yet: press Refresh.");
                            }
                        },
                    );
                    if ui.button("Refresh").on_hover_text("List the serial ports again").clicked() {
                        self.refresh_ports();
                    }
                });
                ui.end_row();

                let label = ui.label("Baud");
                ui.horizontal(|ui| {
                    ui.add(egui::TextEdit::singleline(&mut self.baud_text).desired_width(90.0))
                        .labelled_by(label.id)
                        .on_hover_text("Any rate the adapter supports; non-standard rates are used as given");
                    egui::ComboBox::from_id_salt("serial-bauds").selected_text("common").width(60.0).show_ui(
                        ui,
                        |ui| {
                            for b in COMMON_BAUDS {
                                if ui.selectable_label(self.baud_text == b.to_string(), b.to_string()).clicked() {
                                    self.baud_text = b.to_string();
                                }
                            }
                        },
                    );
                });
                ui.end_row();

                ui.label("Framing");
                ui.horizontal(|ui| {
                    egui::ComboBox::from_id_salt("serial-framing").selected_text(self.framing.clone()).show_ui(
                        ui,
                        |ui| {
                            for f in FRAMINGS {
                                ui.selectable_value(&mut self.framing, f.to_owned(), f);
                            }
                        },
                    );
                    ui.label("Flow");
                    egui::ComboBox::from_id_salt("serial-flow").selected_text(flow_label(self.flow)).show_ui(
                        ui,
                        |ui| {
                            for f in [FlowControl::None, FlowControl::Software, FlowControl::Hardware] {
                                ui.selectable_value(&mut self.flow, f, flow_label(f));
                            }
                        },
                    );
                });
                ui.end_row();

                match self.kind {
                    ProtocolKind::SimpleFoc => {
                        let label = ui.label("Motor id");
                        ui.add(egui::TextEdit::singleline(&mut self.motor_text).desired_width(30.0))
                            .labelled_by(label.id)
                            .on_hover_text("The letter the sketch registers the motor under (commander.add)");
                        ui.end_row();
                    }
                    ProtocolKind::ODrive => {
                        ui.label("Axis");
                        ui.horizontal(|ui| {
                            ui.radio_value(&mut self.axis, 0, "0");
                            ui.radio_value(&mut self.axis, 1, "1");
                            ui.checkbox(&mut self.checksum, "checksum")
                                .on_hover_text("Append *NN to every line and check the replies' checksums");
                        });
                        ui.end_row();
                    }
                    ProtocolKind::Vesc => {
                        let label = ui.label("Pole pairs");
                        ui.add(egui::TextEdit::singleline(&mut self.pole_pairs_text).desired_width(40.0))
                            .labelled_by(label.id)
                            .on_hover_text("The motor's pole pairs: the VESC speaks electrical rpm");
                        ui.end_row();
                    }
                    ProtocolKind::Modbus => {
                        let label = ui.label("Unit");
                        ui.add(egui::TextEdit::singleline(&mut self.unit_text).desired_width(40.0))
                            .labelled_by(label.id)
                            .on_hover_text(
                                "The drive's Modbus address (1–247). The register map is the preset; \
                                 edit it in the project file for another drive",
                            );
                        ui.end_row();
                    }
                    ProtocolKind::Plotter => {}
                }
            });
            ui.label(
                RichText::new("No hardware? Run `drivebench emulate --protocol odrive` and type the path it prints.")
                    .small()
                    .weak(),
            );
            if let Some(e) = &self.error {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            ui.horizontal(|ui| {
                if ui.button(RichText::new("Add and connect").strong()).clicked() {
                    match self.connection() {
                        Ok(c) => result = Some(c),
                        Err(e) => self.error = Some(e),
                    }
                }
                if ui.button("Cancel").clicked() {
                    self.open = false;
                }
            });
        });
        if !open {
            self.open = false;
        }
        if result.is_some() {
            self.open = false;
        }
        result
    }
}

fn flow_label(f: FlowControl) -> &'static str {
    match f {
        FlowControl::None => "none",
        FlowControl::Software => "XON/XOFF",
        FlowControl::Hardware => "RTS/CTS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_builds_the_connection_or_says_why_not() {
        let mut d =
            SerialDialog { name: "left".into(), port: "/dev/ttyACM0".into(), ..SerialDialog::default() };
        let (name, c) = d.connection().unwrap();
        assert_eq!(name, "left");
        assert_eq!(c.protocol, Protocol::SimpleFoc { motor: 'M' });
        assert_eq!(c.link.baud, 115_200);
        d.baud_text = "250000".into();
        d.framing = "8E1".into();
        d.kind = ProtocolKind::ODrive;
        d.axis = 1;
        let (_, c) = d.connection().unwrap();
        assert_eq!(c.link.baud, 250_000);
        assert_eq!(c.link.framing(), "8E1");
        assert_eq!(c.protocol, Protocol::ODrive { axis: 1, checksum: false });
        d.baud_text = "fast".into();
        assert!(d.connection().unwrap_err().contains("Baud"));
        d.baud_text = "9600".into();
        d.port = " ".into();
        assert!(d.connection().unwrap_err().contains("port"));
        d.port = "/dev/x".into();
        d.kind = ProtocolKind::SimpleFoc;
        d.motor_text = "MM".into();
        assert!(d.connection().unwrap_err().contains("one letter"));
        d.kind = ProtocolKind::Vesc;
        let (_, c) = d.connection().unwrap();
        assert_eq!(c.protocol, Protocol::Vesc { pole_pairs: 7 });
        d.pole_pairs_text = "0".into();
        assert!(d.connection().unwrap_err().contains("1 to 100"));
        d.kind = ProtocolKind::Modbus;
        d.unit_text = "3".into();
        let (_, c) = d.connection().unwrap();
        assert!(matches!(c.protocol, Protocol::Modbus { unit: 3, .. }));
        d.unit_text = "300".into();
        assert!(d.connection().is_err());
    }
}
