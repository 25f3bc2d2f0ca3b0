//! `--drive` specifications on the command line:
//!
//! * `sim[,name=NAME][,seed=N]` — the built-in simulated drive;
//! * `PROTOCOL:PATH[@BAUD][,key=value…]` — a serial drive, e.g.
//!   `simplefoc:/dev/ttyACM0@115200,motor=M,name=left` or `odrive:/dev/ttyACM1,axis=0`.
//!
//! Serial options: `name`, `framing` (`8N1`, `8E1`, …), `flow` (`none`, `software`,
//! `hardware`); SimpleFOC `motor`; ODrive `axis`, `checksum` (`on`/`off`); VESC `pole_pairs`;
//! Modbus `unit`, `timeout_ms`, `retries` (baud 19200 and framing 8E1 unless given).

use thiserror::Error;

use super::{Connection, DriveConfig, SerialConnection};
use crate::link::{FlowControl, SerialSettings};
use crate::protocol::Protocol;
use crate::sim::SimConfig;

const KINDS: &str = "sim, plotter, simplefoc, odrive, vesc, modbus";

#[derive(Debug, Error, PartialEq)]
pub enum SpecError {
    #[error("empty --drive specification")]
    Empty,
    #[error("unknown drive kind `{0}` (known: {KINDS})")]
    UnknownKind(String),
    #[error("a {0} drive needs a port: {0}:PATH[@BAUD], e.g. {0}:/dev/ttyUSB0@115200")]
    MissingPort(String),
    #[error("`{0}`: options are key=value")]
    NotKeyValue(String),
    #[error("unknown option `{key}` for a {kind} drive (known: {known})")]
    UnknownOption { kind: String, key: String, known: String },
    #[error("option {key}: `{value}` is not valid: {reason}")]
    BadValue { key: String, value: String, reason: String },
}

/// Parses one `--drive` value. `index` (0-based) gives the default name `drive<index+1>`.
pub fn parse_drive_spec(spec: &str, index: usize) -> Result<DriveConfig, SpecError> {
    let mut parts = spec.split(',');
    let head = parts.next().map(str::trim).filter(|k| !k.is_empty()).ok_or(SpecError::Empty)?;
    let mut config = DriveConfig { name: format!("drive{}", index + 1), ..DriveConfig::default() };
    let (kind, target) = match head.split_once(':') {
        Some((kind, target)) => (kind.trim().to_ascii_lowercase(), Some(target.trim())),
        None => (head.to_ascii_lowercase(), None),
    };
    let mut sim = SimConfig { seed: index as u64 + 1, ..SimConfig::default() };
    let mut serial = SerialConnection::default();
    match (kind.as_str(), target) {
        ("sim", None) => {}
        ("sim", Some(_)) => {
            return Err(SpecError::BadValue {
                key: "sim".into(),
                value: head.into(),
                reason: "the simulated drive takes no port".into(),
            });
        }
        ("plotter" | "simplefoc" | "odrive" | "vesc" | "modbus", None) => {
            return Err(SpecError::MissingPort(kind));
        }
        ("plotter" | "simplefoc" | "odrive" | "vesc" | "modbus", Some(target)) => {
            serial.protocol = match kind.as_str() {
                "plotter" => Protocol::Plotter,
                "simplefoc" => Protocol::SimpleFoc { motor: 'M' },
                "vesc" => Protocol::Vesc { pole_pairs: 7 },
                "modbus" => Protocol::modbus(1),
                _ => Protocol::ODrive { axis: 0, checksum: false },
            };
            let (path, baud) = match target.rsplit_once('@') {
                Some((path, baud)) => {
                    let baud: u32 =
                        baud.trim().parse().ok().filter(|b| *b > 0).ok_or_else(|| SpecError::BadValue {
                            key: "baud".into(),
                            value: baud.into(),
                            reason: "expected a positive whole number".into(),
                        })?;
                    (path.trim(), baud)
                }
                None => (target, serial.protocol.default_baud()),
            };
            if path.is_empty() {
                return Err(SpecError::MissingPort(kind));
            }
            serial.link = SerialSettings::new(path, baud);
            serial.link.set_framing(serial.protocol.default_framing()).map_err(|reason| {
                SpecError::BadValue { key: "framing".into(), value: String::new(), reason }
            })?;
        }
        _ => return Err(SpecError::UnknownKind(kind)),
    }
    for opt in parts {
        let (key, value) = opt.split_once('=').ok_or_else(|| SpecError::NotKeyValue(opt.to_owned()))?;
        let (key, value) = (key.trim(), value.trim());
        let bad = |reason: &str| SpecError::BadValue {
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        };
        match (kind.as_str(), key) {
            (_, "name") => {
                if value.is_empty() || value.contains(['.', ':']) {
                    return Err(bad("a name is non-empty and has no `.` or `:`"));
                }
                config.name = value.to_owned();
            }
            ("sim", "seed") => sim.seed = value.parse().map_err(|_| bad("expected a whole number"))?,
            (k, "framing") if k != "sim" => serial.link.set_framing(value).map_err(|e| bad(&e))?,
            (k, "flow") if k != "sim" => {
                serial.link.flow_control = match value.to_ascii_lowercase().as_str() {
                    "none" => FlowControl::None,
                    "software" | "xonxoff" => FlowControl::Software,
                    "hardware" | "rtscts" => FlowControl::Hardware,
                    _ => return Err(bad("expected none, software or hardware")),
                }
            }
            ("simplefoc", "motor") => {
                let mut chars = value.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii_alphabetic() => {
                        serial.protocol = Protocol::SimpleFoc { motor: c };
                    }
                    _ => return Err(bad("expected one letter, the id the motor is registered under")),
                }
            }
            ("odrive", "axis") => {
                let axis: u8 =
                    value.parse().ok().filter(|a| *a <= 1).ok_or_else(|| bad("expected 0 or 1"))?;
                if let Protocol::ODrive { checksum, .. } = serial.protocol {
                    serial.protocol = Protocol::ODrive { axis, checksum };
                }
            }
            ("vesc", "pole_pairs") => {
                let pole_pairs: u32 = value
                    .parse()
                    .ok()
                    .filter(|p| (1..=100).contains(p))
                    .ok_or_else(|| bad("expected 1 to 100"))?;
                serial.protocol = Protocol::Vesc { pole_pairs };
            }
            ("modbus", "unit") => {
                let value: u8 = value
                    .parse()
                    .ok()
                    .filter(|u| (1..=247).contains(u))
                    .ok_or_else(|| bad("expected 1 to 247"))?;
                if let Protocol::Modbus { unit, .. } = &mut serial.protocol {
                    *unit = value;
                }
            }
            ("modbus", "timeout_ms") => {
                let ms: f64 = value
                    .parse()
                    .ok()
                    .filter(|t: &f64| (10.0..=10_000.0).contains(t))
                    .ok_or_else(|| bad("expected 10 to 10000 milliseconds"))?;
                if let Protocol::Modbus { response_timeout_s, .. } = &mut serial.protocol {
                    *response_timeout_s = ms / 1000.0;
                }
            }
            ("modbus", "retries") => {
                let n: u32 =
                    value.parse().ok().filter(|n| *n <= 10).ok_or_else(|| bad("expected 0 to 10"))?;
                if let Protocol::Modbus { retries, .. } = &mut serial.protocol {
                    *retries = n;
                }
            }
            ("odrive", "checksum") => {
                let on = on_off(value).ok_or_else(|| bad("expected on or off"))?;
                if let Protocol::ODrive { axis, .. } = serial.protocol {
                    serial.protocol = Protocol::ODrive { axis, checksum: on };
                }
            }
            (k, "reconnect") if k != "sim" => {
                config.auto_reconnect = on_off(value).ok_or_else(|| bad("expected on or off"))?;
            }
            _ => {
                let known = match kind.as_str() {
                    "sim" => "name, seed",
                    "simplefoc" => "name, framing, flow, reconnect, motor",
                    "odrive" => "name, framing, flow, reconnect, axis, checksum",
                    "vesc" => "name, framing, flow, reconnect, pole_pairs",
                    "modbus" => "name, framing, flow, reconnect, unit, timeout_ms, retries",
                    _ => "name, framing, flow, reconnect",
                };
                return Err(SpecError::UnknownOption { kind, key: key.to_owned(), known: known.into() });
            }
        }
    }
    config.connection = if kind == "sim" { Connection::Simulated(sim) } else { Connection::Serial(serial) };
    Ok(config)
}

fn on_off(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "1" | "true" | "yes" => Some(true),
        "off" | "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Parity;

    #[test]
    fn sim_specs() {
        let d = parse_drive_spec("sim", 1).unwrap();
        assert_eq!(d.name, "drive2");
        let d = parse_drive_spec("sim,name=left,seed=9", 0).unwrap();
        assert_eq!(d.name, "left");
        assert!(matches!(d.connection, Connection::Simulated(ref c) if c.seed == 9));
        assert_eq!(parse_drive_spec("", 0), Err(SpecError::Empty));
        assert!(matches!(parse_drive_spec("can:x", 0), Err(SpecError::UnknownKind(_))));
        assert!(matches!(parse_drive_spec("sim,speed=3", 0), Err(SpecError::UnknownOption { .. })));
        assert!(matches!(parse_drive_spec("sim,seed=x", 0), Err(SpecError::BadValue { .. })));
        assert!(matches!(parse_drive_spec("sim,name", 0), Err(SpecError::NotKeyValue(_))));
    }

    fn serial(spec: &str) -> (String, SerialConnection) {
        let d = parse_drive_spec(spec, 0).unwrap_or_else(|e| panic!("{spec}: {e}"));
        match d.connection {
            Connection::Serial(s) => (d.name, s),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn serial_specs() {
        let (name, s) = serial("simplefoc:/dev/ttyACM0@115200,motor=A,name=left");
        assert_eq!(name, "left");
        assert_eq!(s.link.port, "/dev/ttyACM0");
        assert_eq!(s.link.baud, 115_200);
        assert_eq!(s.protocol, Protocol::SimpleFoc { motor: 'A' });
        let (_, s) = serial("odrive:/dev/ttyACM1,axis=1,checksum=on");
        assert_eq!(s.link.baud, 115_200, "default baud");
        assert_eq!(s.protocol, Protocol::ODrive { axis: 1, checksum: true });
        let (_, s) = serial("plotter:/dev/pts/7@2000000,framing=8E2,flow=hardware");
        assert_eq!((s.link.baud, s.link.parity, s.link.stop_bits), (2_000_000, Parity::Even, 2));
        assert_eq!(s.link.flow_control, FlowControl::Hardware);
        assert_eq!(s.protocol, Protocol::Plotter);
        let (_, s) = serial("vesc:/dev/ttyACM0,pole_pairs=7");
        assert_eq!(s.protocol, Protocol::Vesc { pole_pairs: 7 });
        assert!(parse_drive_spec("vesc:/dev/ttyACM0", 0).unwrap().auto_reconnect);
        assert!(!parse_drive_spec("vesc:/dev/ttyACM0,reconnect=off", 0).unwrap().auto_reconnect);
        assert_eq!(s.link.framing(), "8N1");
        let (_, s) = serial("modbus:/dev/ttyUSB0@19200,unit=3");
        assert!(matches!(s.protocol, Protocol::Modbus { unit: 3, .. }));
        assert_eq!((s.link.baud, s.link.framing().as_str()), (19_200, "8E1"), "Modbus defaults to 8E1");
        let (_, s) = serial("modbus:/dev/ttyUSB0,framing=8N2,timeout_ms=500,retries=0");
        assert_eq!((s.link.baud, s.link.framing().as_str()), (19_200, "8N2"));
        assert!(
            matches!(s.protocol, Protocol::Modbus { retries: 0, response_timeout_s, .. } if response_timeout_s == 0.5)
        );
    }

    #[test]
    fn bad_serial_specs_name_the_problem() {
        let cases = [
            ("odrive", "needs a port"),
            ("odrive:", "needs a port"),
            ("odrive:/dev/x@fast", "baud"),
            ("odrive:/dev/x@0", "baud"),
            ("odrive:/dev/x,axis=2", "0 or 1"),
            ("simplefoc:/dev/x,motor=MM", "one letter"),
            ("simplefoc:/dev/x,axis=0", "unknown option"),
            ("plotter:/dev/x,framing=9Z9", "framing"),
            ("can:/dev/x", "unknown drive kind"),
            ("vesc:/dev/x,pole_pairs=0", "1 to 100"),
            ("vesc:/dev/x,reconnect=maybe", "on or off"),
            ("sim,reconnect=off", "unknown option"),
            ("modbus:/dev/x,unit=0", "1 to 247"),
            ("modbus:/dev/x,unit=248", "1 to 247"),
        ];
        for (spec, want) in cases {
            let err = parse_drive_spec(spec, 0).err().unwrap_or_else(|| panic!("{spec} parsed"));
            assert!(err.to_string().contains(want), "{spec}: {err}");
        }
    }
}
