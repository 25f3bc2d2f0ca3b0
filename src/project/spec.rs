//! `--drive` specifications on the command line: `sim[,name=NAME][,seed=N]`; serial
//! protocols extend the same `KIND[:PATH][,key=value…]` form.

use thiserror::Error;

use super::{Connection, DriveConfig};
use crate::sim::SimConfig;

#[derive(Debug, Error, PartialEq)]
pub enum SpecError {
    #[error("empty --drive specification")]
    Empty,
    #[error("unknown drive kind `{0}` (known: sim)")]
    UnknownKind(String),
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
    let kind = parts.next().map(str::trim).filter(|k| !k.is_empty()).ok_or(SpecError::Empty)?;
    let mut config = DriveConfig { name: format!("drive{}", index + 1), ..DriveConfig::default() };
    let mut sim = SimConfig { seed: index as u64 + 1, ..SimConfig::default() };
    match kind {
        "sim" => {}
        other => return Err(SpecError::UnknownKind(other.to_owned())),
    }
    for opt in parts {
        let (key, value) = opt.split_once('=').ok_or_else(|| SpecError::NotKeyValue(opt.to_owned()))?;
        let (key, value) = (key.trim(), value.trim());
        let bad = |reason: &str| SpecError::BadValue {
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        };
        match key {
            "name" => {
                if value.is_empty() || value.contains('.') {
                    return Err(bad("a name is non-empty and has no `.`"));
                }
                config.name = value.to_owned();
            }
            "seed" => sim.seed = value.parse().map_err(|_| bad("expected a whole number"))?,
            _ => {
                return Err(SpecError::UnknownOption {
                    kind: kind.to_owned(),
                    key: key.to_owned(),
                    known: "name, seed".into(),
                });
            }
        }
    }
    config.connection = Connection::Simulated(sim);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
