//! Modbus register maps as data: which register holds what, in which type, word order, scale
//! and unit, and which CiA 402 role it plays. A map lives in the project file (RON), so a
//! drive whose vendor table differs from the emulator's is a matter of editing data.
//!
//! Conventions:
//! * `raw × scale = value in unit`: a register holding 0.01 A steps has `scale: 0.01`,
//!   `unit: "A"`; millivolts read as volts have `scale: 0.001`, `unit: "V"`.
//! * `min`/`max` are in the entry's unit; without them the type's raw range (× scale) applies.
//! * 32-bit types span two consecutive registers; the map's word order (high word first by
//!   default) applies unless the entry overrides it.
//! * Entries with a [`Role`] drive the codec: the controlword, statusword and mode registers
//!   run the CiA 402 state machine, the targets take setpoints, the actual values become
//!   telemetry. Role entries use the canonical units (rpm, rev, A, V, °C; torque in ‰, % or
//!   A): the scale converts the vendor's unit. Entries without a control role form the
//!   parameter catalogue, keyed by their name.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::drive::ControlMode;

/// Largest quantity of a read (0x03/0x04).
pub const MAX_READ_QTY: u16 = 125;
/// Largest quantity of a write multiple registers (0x10).
pub const MAX_WRITE_QTY: u16 = 123;

/// How a 32-bit value is laid out over two registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WordOrder {
    /// The register at the lower address holds the high word (the Modbus convention).
    #[default]
    HighFirst,
    /// The register at the lower address holds the low word (e.g. Kinco).
    LowFirst,
}

/// The type of a register's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RegType {
    /// Unsigned 16-bit, one register.
    #[default]
    U16,
    /// Signed 16-bit (two's complement), one register.
    I16,
    /// Unsigned 32-bit over two registers.
    U32,
    /// Signed 32-bit over two registers.
    I32,
    /// IEEE 754 single precision over two registers.
    F32,
}

impl RegType {
    /// Registers the value spans.
    pub fn words(self) -> u16 {
        match self {
            RegType::U16 | RegType::I16 => 1,
            RegType::U32 | RegType::I32 | RegType::F32 => 2,
        }
    }

    /// The type as written in messages (`u16`, `i32`…).
    pub fn label(self) -> &'static str {
        match self {
            RegType::U16 => "u16",
            RegType::I16 => "i16",
            RegType::U32 => "u32",
            RegType::I32 => "i32",
            RegType::F32 => "f32",
        }
    }

    /// The raw values the type can hold.
    pub fn raw_range(self) -> (f64, f64) {
        match self {
            RegType::U16 => (0.0, f64::from(u16::MAX)),
            RegType::I16 => (f64::from(i16::MIN), f64::from(i16::MAX)),
            RegType::U32 => (0.0, f64::from(u32::MAX)),
            RegType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
            RegType::F32 => (f64::from(f32::MIN), f64::from(f32::MAX)),
        }
    }

    fn is_integer(self) -> bool {
        !matches!(self, RegType::F32)
    }
}

/// Whether the host may write a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Access {
    /// Read only: a write is refused before it is sent.
    #[default]
    ReadOnly,
    /// Read and write.
    ReadWrite,
}

/// Which register table an entry lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Table {
    /// Holding registers: read with 0x03, written with 0x06/0x10.
    #[default]
    Holding,
    /// Input registers: read-only, read with 0x04.
    Input,
}

/// What a register means to the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// CiA 402 0x6040, written by enable/disable/stop/reset.
    Controlword,
    /// CiA 402 0x6041, decoded into the power state.
    Statusword,
    /// CiA 402 0x6060 (1 profile position, 3 profile velocity, 4 profile torque).
    ModesOfOperation,
    /// CiA 402 0x6061, the mode actually active.
    ModesDisplay,
    /// Speed setpoint, rpm.
    TargetVelocity,
    /// Measured speed, rpm: the `speed_rpm` signal.
    VelocityActual,
    /// Position setpoint, rev.
    TargetPosition,
    /// Measured position, rev: the `position_rev` signal.
    PositionActual,
    /// Torque setpoint in ‰ or % of rated (needs the map's rated current), or in A.
    TargetTorque,
    /// Measured torque, an extra signal in its own unit.
    TorqueActual,
    /// Measured current in A, or ‰/% of the rated current: the `current_a` signal.
    CurrentActual,
    /// CiA 402 0x603F, decoded into the fault text.
    ErrorCode,
    /// DC-link voltage, V: the `voltage_v` signal.
    DcLinkVoltage,
    /// Drive or motor temperature, °C: the `temperature_c` signal.
    Temperature,
}

impl Role {
    /// Every role, in the order of the CiA 402 objects.
    pub const ALL: [Role; 14] = [
        Role::Controlword,
        Role::Statusword,
        Role::ModesOfOperation,
        Role::ModesDisplay,
        Role::TargetVelocity,
        Role::VelocityActual,
        Role::TargetPosition,
        Role::PositionActual,
        Role::TargetTorque,
        Role::TorqueActual,
        Role::CurrentActual,
        Role::ErrorCode,
        Role::DcLinkVoltage,
        Role::Temperature,
    ];

    /// The role in words, as in messages.
    pub fn label(self) -> &'static str {
        match self {
            Role::Controlword => "controlword",
            Role::Statusword => "statusword",
            Role::ModesOfOperation => "modes of operation",
            Role::ModesDisplay => "modes of operation display",
            Role::TargetVelocity => "target velocity",
            Role::VelocityActual => "velocity actual",
            Role::TargetPosition => "target position",
            Role::PositionActual => "position actual",
            Role::TargetTorque => "target torque",
            Role::TorqueActual => "torque actual",
            Role::CurrentActual => "current actual",
            Role::ErrorCode => "error code",
            Role::DcLinkVoltage => "DC-link voltage",
            Role::Temperature => "temperature",
        }
    }

    /// Roles the codec writes to command the drive; entries with them are not catalogue
    /// parameters, and console writes to them are classified as setpoints or refused.
    pub fn is_control(self) -> bool {
        matches!(
            self,
            Role::Controlword
                | Role::ModesOfOperation
                | Role::TargetVelocity
                | Role::TargetPosition
                | Role::TargetTorque
        )
    }

    /// The mode whose setpoint a target role holds.
    pub fn target_mode(self) -> Option<ControlMode> {
        match self {
            Role::TargetVelocity => Some(ControlMode::Speed),
            Role::TargetPosition => Some(ControlMode::Position),
            Role::TargetTorque => Some(ControlMode::Current),
            _ => None,
        }
    }

    /// The target role of a mode.
    pub fn target_of(mode: ControlMode) -> Role {
        match mode {
            ControlMode::Speed => Role::TargetVelocity,
            ControlMode::Position => Role::TargetPosition,
            ControlMode::Current => Role::TargetTorque,
        }
    }

    /// Bit fields and codes: a 16-bit integer with scale 1.
    pub fn is_word(self) -> bool {
        matches!(
            self,
            Role::Controlword
                | Role::Statusword
                | Role::ModesOfOperation
                | Role::ModesDisplay
                | Role::ErrorCode
        )
    }

    /// The units an entry with this role may use (empty: any, the value is a code).
    pub fn units(self) -> &'static [&'static str] {
        match self {
            Role::TargetVelocity | Role::VelocityActual => &["rpm"],
            Role::TargetPosition | Role::PositionActual => &["rev"],
            Role::TargetTorque | Role::TorqueActual | Role::CurrentActual => &["‰", "%", "A"],
            Role::DcLinkVoltage => &["V"],
            Role::Temperature => &["°C"],
            _ => &[],
        }
    }
}

/// One register (or register pair) of a drive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegisterEntry {
    /// snake_case; the catalogue key of a parameter entry.
    pub name: String,
    /// PDU address (0-based: "40001" is holding register 0).
    pub address: u16,
    /// Holding (default) or input registers.
    pub table: Table,
    /// The value's type; 32-bit types span `address` and `address + 1`.
    pub kind: RegType,
    /// Overrides the map's word order for this 32-bit entry.
    pub word_order: Option<WordOrder>,
    /// raw × scale = value in `unit`.
    pub scale: f64,
    /// Unit of the scaled value (for role entries, the canonical unit of the role).
    pub unit: String,
    /// Read-only (default) or read-write.
    pub access: Access,
    /// Allowed values in `unit` (writes outside are refused before they are sent).
    pub min: Option<f64>,
    /// See `min`.
    pub max: Option<f64>,
    /// What the codec uses the register for; `None`: a catalogue parameter.
    pub role: Option<Role>,
    /// One line for the parameter editor.
    pub help: String,
}

impl Default for RegisterEntry {
    fn default() -> Self {
        RegisterEntry {
            name: String::new(),
            address: 0,
            table: Table::Holding,
            kind: RegType::U16,
            word_order: None,
            scale: 1.0,
            unit: String::new(),
            access: Access::ReadOnly,
            min: None,
            max: None,
            role: None,
            help: String::new(),
        }
    }
}

impl RegisterEntry {
    /// Registers the entry spans.
    pub fn words(&self) -> u16 {
        self.kind.words()
    }

    /// One past the last address, as a `u32` so that it cannot overflow.
    pub fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.words())
    }

    /// Whether `address` in `table` belongs to this entry.
    pub fn covers(&self, table: Table, address: u16) -> bool {
        self.table == table
            && u32::from(address) >= u32::from(self.address)
            && u32::from(address) < self.end()
    }

    /// Whether the host may write the entry.
    pub fn writable(&self) -> bool {
        self.access == Access::ReadWrite
    }

    /// The values the entry can take, in its unit: the type's raw range times the scale,
    /// narrowed by `min`/`max`.
    pub fn range(&self) -> (f64, f64) {
        let (raw_lo, raw_hi) = self.kind.raw_range();
        let (a, b) = (raw_lo * self.scale, raw_hi * self.scale);
        let (mut lo, mut hi) = if a <= b { (a, b) } else { (b, a) };
        if let Some(min) = self.min.filter(|v| v.is_finite()) {
            lo = lo.max(min);
        }
        if let Some(max) = self.max.filter(|v| v.is_finite()) {
            hi = hi.min(max);
        }
        (lo, hi)
    }

    /// The raw value of the registers `words` (exactly [`RegisterEntry::words`] of them).
    pub fn raw(&self, words: &[u16], order: WordOrder) -> Result<f64, ValueError> {
        let expected = usize::from(self.words());
        if words.len() != expected {
            return Err(ValueError::Length { name: self.name.clone(), expected, got: words.len() });
        }
        let wide = || -> u32 {
            let (hi, lo) = match order {
                WordOrder::HighFirst => (words[0], words[1]),
                WordOrder::LowFirst => (words[1], words[0]),
            };
            (u32::from(hi) << 16) | u32::from(lo)
        };
        let raw = match self.kind {
            RegType::U16 => f64::from(words[0]),
            RegType::I16 => f64::from(words[0] as i16),
            RegType::U32 => f64::from(wide()),
            RegType::I32 => f64::from(wide() as i32),
            RegType::F32 => f64::from(f32::from_bits(wide())),
        };
        if raw.is_finite() { Ok(raw) } else { Err(ValueError::NotFinite { name: self.name.clone() }) }
    }

    /// The value (raw × scale) held by the registers `words`.
    pub fn decode(&self, words: &[u16], order: WordOrder) -> Result<f64, ValueError> {
        let raw = self.raw(words, order)?;
        // Dividing by 1000 rather than multiplying by 0.001 gives 0.059, not 0.059000000000000004.
        let value = match self.inverse_scale() {
            Some(divisor) => raw / divisor,
            None => raw * self.scale,
        };
        if value.is_finite() { Ok(value) } else { Err(ValueError::NotFinite { name: self.name.clone() }) }
    }

    /// The registers that hold `value` (in the entry's unit), after checking it against the
    /// entry's range. Integer types round to the nearest step.
    pub fn encode(&self, value: f64, order: WordOrder) -> Result<Vec<u16>, ValueError> {
        if !value.is_finite() {
            return Err(ValueError::NotFinite { name: self.name.clone() });
        }
        let (lo, hi) = self.range();
        let out_of_range = || ValueError::OutOfRange {
            name: self.name.clone(),
            value,
            min: lo,
            max: hi,
            unit: self.unit.clone(),
        };
        let slack = 1e-9 * lo.abs().max(hi.abs()).max(1.0);
        if !(lo - slack..=hi + slack).contains(&value) || self.scale == 0.0 || !self.scale.is_finite() {
            return Err(out_of_range());
        }
        let raw = match self.inverse_scale() {
            Some(divisor) => value * divisor,
            None => value / self.scale,
        };
        let (raw_lo, raw_hi) = self.kind.raw_range();
        // Toward zero, so that a value checked against a limit never grows past it on the way
        // to the register (only float noise next to a whole step rounds to it).
        let raw = if !self.kind.is_integer() {
            raw
        } else if (raw - raw.round()).abs() <= 1e-6 * raw.abs().max(1.0) {
            raw.round()
        } else {
            raw.trunc()
        };
        if !(raw_lo..=raw_hi).contains(&raw) {
            return Err(out_of_range());
        }
        let split = |wide: u32| -> Vec<u16> {
            let (hi, lo) = ((wide >> 16) as u16, wide as u16);
            match order {
                WordOrder::HighFirst => vec![hi, lo],
                WordOrder::LowFirst => vec![lo, hi],
            }
        };
        Ok(match self.kind {
            RegType::U16 => vec![raw as u16],
            RegType::I16 => vec![(raw as i16) as u16],
            RegType::U32 => split(raw as u32),
            RegType::I32 => split((raw as i32) as u32),
            RegType::F32 => split((raw as f32).to_bits()),
        })
    }

    /// 1 / scale when that is a whole number (scales like 0.1, 0.01, 0.001).
    fn inverse_scale(&self) -> Option<f64> {
        let inverse = 1.0 / self.scale;
        let whole = inverse.round();
        (self.scale.abs() < 1.0 && whole != 0.0 && (inverse - whole).abs() <= 1e-9 * whole.abs())
            .then_some(whole)
    }

    /// `value` as the drive will hold it once encoded (rounded to the register's step).
    pub fn quantize(&self, value: f64, order: WordOrder) -> Result<f64, ValueError> {
        let words = self.encode(value, order)?;
        self.decode(&words, order)
    }
}

/// Why a value does not fit a register.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ValueError {
    /// NaN or infinite, as a value to write or as an `f32` read.
    #[error("{name}: the value is not a finite number")]
    NotFinite { name: String },
    /// Outside `min`/`max` or what the type can hold.
    #[error("{name} = {value} {unit} is outside the register's range {min} … {max} {unit}")]
    OutOfRange { name: String, value: f64, min: f64, max: f64, unit: String },
    /// Not as many registers as the type spans.
    #[error("{name} spans {expected} registers, not {got}")]
    Length { name: String, expected: usize, got: usize },
}

/// A run of consecutive registers read in one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The table read (0x03 for holding, 0x04 for input registers).
    pub table: Table,
    /// First address.
    pub start: u16,
    /// Registers read (1–125).
    pub qty: u16,
}

impl Block {
    /// Whether the whole of `entry` lies inside the block.
    pub fn contains(&self, entry: &RegisterEntry) -> bool {
        entry.table == self.table
            && entry.address >= self.start
            && entry.end() <= u32::from(self.start) + u32::from(self.qty)
    }
}

/// A drive's register map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegisterMap {
    /// The registers, in any order.
    pub entries: Vec<RegisterEntry>,
    /// Word order of 32-bit entries that do not set their own.
    pub word_order: WordOrder,
    /// Rated current of the drive/motor pair: converts torque and current in ‰ or % of
    /// rated to A. Without it, a torque target in ‰ cannot take current setpoints.
    pub rated_current_a: Option<f64>,
    /// Largest read the drive accepts (1–125); reads of neighbouring registers are joined up
    /// to this many registers.
    pub max_read_registers: u16,
}

impl Default for RegisterMap {
    /// An empty map (high word first, 125-register reads): start from [`RegisterMap::preset`].
    fn default() -> Self {
        RegisterMap {
            entries: Vec::new(),
            word_order: WordOrder::HighFirst,
            rated_current_a: None,
            max_read_registers: MAX_READ_QTY,
        }
    }
}

/// Rated current of the emulated drive: 1000 ‰ of torque is this current.
pub const PRESET_RATED_CURRENT_A: f64 = 5.0;

impl RegisterMap {
    /// drivebench's emulator map: `drivebench emulate --protocol modbus` serves exactly this
    /// table (unit 1, high word first, every address a holding register also readable with
    /// 0x04). Torque is in ‰ of the rated current, 5 A.
    pub fn preset() -> Self {
        use Access::{ReadOnly as RO, ReadWrite as RW};
        #[allow(clippy::too_many_arguments)]
        fn entry(
            name: &str,
            address: u16,
            kind: RegType,
            access: Access,
            scale: f64,
            unit: &str,
            role: Option<Role>,
            range: Option<(f64, f64)>,
            help: &str,
        ) -> RegisterEntry {
            RegisterEntry {
                name: name.to_owned(),
                address,
                kind,
                access,
                scale,
                unit: unit.to_owned(),
                role,
                min: range.map(|r| r.0),
                max: range.map(|r| r.1),
                help: help.to_owned(),
                ..RegisterEntry::default()
            }
        }
        let entries = vec![
            entry(
                "controlword",
                0x0000,
                RegType::U16,
                RW,
                1.0,
                "",
                Some(Role::Controlword),
                None,
                "CiA 402 controlword",
            ),
            entry(
                "statusword",
                0x0001,
                RegType::U16,
                RO,
                1.0,
                "",
                Some(Role::Statusword),
                None,
                "CiA 402 statusword",
            ),
            entry(
                "modes_of_operation",
                0x0002,
                RegType::I16,
                RW,
                1.0,
                "",
                Some(Role::ModesOfOperation),
                None,
                "1 profile position, 3 profile velocity, 4 profile torque",
            ),
            entry(
                "modes_display",
                0x0003,
                RegType::I16,
                RO,
                1.0,
                "",
                Some(Role::ModesDisplay),
                None,
                "The active mode of operation",
            ),
            entry(
                "target_velocity",
                0x0004,
                RegType::I32,
                RW,
                1.0,
                "rpm",
                Some(Role::TargetVelocity),
                Some((-20_000.0, 20_000.0)),
                "Speed setpoint of profile velocity mode",
            ),
            entry(
                "velocity_actual",
                0x0006,
                RegType::I32,
                RO,
                1.0,
                "rpm",
                Some(Role::VelocityActual),
                None,
                "Measured speed",
            ),
            entry(
                "target_position",
                0x0008,
                RegType::I32,
                RW,
                0.001,
                "rev",
                Some(Role::TargetPosition),
                Some((-1_000_000.0, 1_000_000.0)),
                "Position setpoint of profile position mode",
            ),
            entry(
                "position_actual",
                0x000A,
                RegType::I32,
                RO,
                0.001,
                "rev",
                Some(Role::PositionActual),
                None,
                "Measured position",
            ),
            entry(
                "target_torque",
                0x000C,
                RegType::I16,
                RW,
                1.0,
                "‰",
                Some(Role::TargetTorque),
                Some((-3000.0, 3000.0)),
                "Torque setpoint of profile torque mode, ‰ of rated",
            ),
            entry(
                "torque_actual",
                0x000D,
                RegType::I16,
                RO,
                1.0,
                "‰",
                Some(Role::TorqueActual),
                None,
                "Measured torque, ‰ of rated",
            ),
            entry(
                "current_actual",
                0x000E,
                RegType::I16,
                RO,
                0.01,
                "A",
                Some(Role::CurrentActual),
                None,
                "Measured current",
            ),
            entry(
                "error_code",
                0x000F,
                RegType::U16,
                RO,
                1.0,
                "",
                Some(Role::ErrorCode),
                None,
                "CiA 402 error code (0x603F)",
            ),
            entry(
                "dc_link_voltage",
                0x0010,
                RegType::U32,
                RO,
                0.001,
                "V",
                Some(Role::DcLinkVoltage),
                None,
                "DC-link voltage (mV on the wire)",
            ),
            entry(
                "temperature",
                0x0012,
                RegType::I16,
                RO,
                0.1,
                "°C",
                Some(Role::Temperature),
                None,
                "Drive temperature",
            ),
            entry(
                "velocity_kp",
                0x0020,
                RegType::U16,
                RW,
                0.001,
                "A/rpm",
                None,
                Some((0.0, 2.0)),
                "Proportional gain of the velocity loop: current per rpm of speed error",
            ),
            entry(
                "velocity_ki",
                0x0021,
                RegType::U16,
                RW,
                0.001,
                "A/(rpm·s)",
                None,
                Some((0.0, 65.535)),
                "Integral gain of the velocity loop",
            ),
            entry(
                "current_limit",
                0x0022,
                RegType::U16,
                RW,
                0.01,
                "A",
                None,
                Some((0.1, 50.0)),
                "Largest current in every mode, both signs",
            ),
            entry(
                "max_velocity",
                0x0023,
                RegType::U16,
                RW,
                1.0,
                "rpm",
                None,
                Some((1.0, 20_000.0)),
                "Largest speed, both signs",
            ),
        ];
        RegisterMap {
            entries,
            word_order: WordOrder::HighFirst,
            rated_current_a: Some(PRESET_RATED_CURRENT_A),
            max_read_registers: MAX_READ_QTY,
        }
    }

    /// Checks the map: names, scales, ranges, overlaps, roles, units, limits. Lists every
    /// problem found, separated by `; `.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems: Vec<String> = Vec::new();
        if self.entries.is_empty() {
            problems.push("the map has no entries".into());
        }
        if !(1..=MAX_READ_QTY).contains(&self.max_read_registers) {
            problems.push(format!(
                "max_read_registers is {}; a Modbus read takes 1–{MAX_READ_QTY} registers",
                self.max_read_registers
            ));
        }
        if let Some(rated) = self.rated_current_a
            && !(rated.is_finite() && rated > 0.0)
        {
            problems.push(format!("rated_current_a must be a positive number of amperes, not {rated}"));
        }
        for (index, e) in self.entries.iter().enumerate() {
            let who = if e.name.is_empty() { format!("entry #{index}") } else { e.name.clone() };
            if e.name.is_empty() {
                problems.push(format!("{who} has no name"));
            } else if !e.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                || !e.name.as_bytes()[0].is_ascii_lowercase()
            {
                problems.push(format!("{who}: names are snake_case (a–z, 0–9, _), starting with a letter"));
            }
            if self.entries[..index].iter().any(|other| other.name == e.name) && !e.name.is_empty() {
                problems.push(format!("{who} is named twice"));
            }
            if !(e.scale.is_finite() && e.scale != 0.0) {
                problems.push(format!("{who}: scale must be a finite, non-zero number, not {}", e.scale));
            }
            if e.end() > 0x1_0000 {
                problems.push(format!(
                    "{who}: a {} at 0x{:04X} spans {} registers and runs past the last address 0xFFFF",
                    e.kind.label(),
                    e.address,
                    e.words()
                ));
            }
            for (label, bound) in [("min", e.min), ("max", e.max)] {
                if let Some(v) = bound
                    && !v.is_finite()
                {
                    problems.push(format!("{who}: {label} must be a finite number, not {v}"));
                }
            }
            if let (Some(min), Some(max)) = (e.min, e.max)
                && min > max
            {
                problems.push(format!("{who}: min {min} is above max {max}"));
            }
            if e.table == Table::Input && e.writable() {
                problems
                    .push(format!("{who}: input registers are read-only; use the holding table to write"));
            }
            if e.word_order.is_some() && e.words() == 1 {
                problems.push(format!(
                    "{who}: a word order only applies to 32-bit types, not {}",
                    e.kind.label()
                ));
            }
            for other in &self.entries[..index] {
                if other.table == e.table
                    && u32::from(other.address) < e.end()
                    && u32::from(e.address) < other.end()
                {
                    problems.push(format!(
                        "{who} (0x{:04X}–0x{:04X}) overlaps {} (0x{:04X}–0x{:04X})",
                        e.address,
                        e.end() - 1,
                        other.name,
                        other.address,
                        other.end() - 1
                    ));
                }
            }
            let Some(role) = e.role else {
                continue;
            };
            if let Some(other) = self.entries[..index].iter().find(|o| o.role == Some(role)) {
                problems.push(format!("{who} and {} both have the role {:?}", other.name, role));
            }
            if role.is_word() && (!matches!(e.kind, RegType::U16 | RegType::I16) || e.scale != 1.0) {
                problems.push(format!(
                    "{who}: the {} is a 16-bit integer with scale 1, not {} × {}",
                    role.label(),
                    e.kind.label(),
                    e.scale
                ));
            }
            if role.is_control() && !e.writable() {
                problems.push(format!("{who}: the {} must be ReadWrite", role.label()));
            }
            let units = role.units();
            if !units.is_empty() && !units.contains(&e.unit.as_str()) {
                problems.push(format!(
                    "{who}: the {} is in {} (use scale to convert the drive's unit), not `{}`",
                    role.label(),
                    units.iter().map(|u| format!("`{u}`")).collect::<Vec<_>>().join(" or "),
                    e.unit
                ));
            }
            if role == Role::CurrentActual && e.unit != "A" && self.rated_current_a.is_none() {
                problems.push(format!(
                    "{who}: the current actual is in {} of the rated current: set rated_current_a",
                    e.unit
                ));
            }
        }
        let has = |role: Role| self.role(role).is_some();
        let targets: Vec<Role> = [Role::TargetVelocity, Role::TargetPosition, Role::TargetTorque]
            .into_iter()
            .filter(|r| has(*r))
            .collect();
        if has(Role::Controlword) != has(Role::Statusword) {
            problems.push(
                "a controlword needs a statusword and vice versa: the enable sequence writes one and waits on the \
                 other"
                    .into(),
            );
        }
        let can_enable = has(Role::Controlword) && has(Role::Statusword);
        if !targets.is_empty() && !can_enable {
            problems.push(format!(
                "the {} needs a controlword and a statusword to enable the drive",
                targets[0].label()
            ));
        }
        if targets.len() > 1 && !has(Role::ModesOfOperation) {
            problems.push(format!(
                "{} targets but no modes_of_operation: with several targets the mode must be selectable",
                targets.len()
            ));
        }
        if has(Role::ModesDisplay) && !has(Role::ModesOfOperation) {
            problems.push("a modes display without modes of operation".into());
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }

    /// The word order of an entry.
    pub fn order_of(&self, entry: &RegisterEntry) -> WordOrder {
        entry.word_order.unwrap_or(self.word_order)
    }

    /// The entry named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.name == name)
    }

    /// The entry with `role`.
    pub fn role(&self, role: Role) -> Option<usize> {
        self.entries.iter().position(|e| e.role == Some(role))
    }

    /// The entry that `address` of `table` belongs to.
    pub fn entry_at(&self, table: Table, address: u16) -> Option<usize> {
        self.entries.iter().position(|e| e.covers(table, address))
    }

    /// Whether an entry is in the parameter catalogue: no control role, and either writable
    /// or without any role (a read-only value the codec does not interpret).
    pub fn is_catalogue(&self, index: usize) -> bool {
        self.entries.get(index).is_some_and(|e| match e.role {
            Some(role) => !role.is_control() && e.writable(),
            None => true,
        })
    }

    /// Decodes an entry from its registers.
    pub fn decode(&self, index: usize, words: &[u16]) -> Result<f64, ValueError> {
        let entry = self.entry(index)?;
        entry.decode(words, self.order_of(entry))
    }

    /// Encodes a value (in the entry's unit) into its registers.
    pub fn encode(&self, index: usize, value: f64) -> Result<Vec<u16>, ValueError> {
        let entry = self.entry(index)?;
        entry.encode(value, self.order_of(entry))
    }

    fn entry(&self, index: usize) -> Result<&RegisterEntry, ValueError> {
        self.entries.get(index).ok_or_else(|| ValueError::Length {
            name: format!("entry #{index}"),
            expected: 0,
            got: 0,
        })
    }

    /// A value of a current-like entry (torque or current, in ‰, % or A) in amperes; `None`
    /// when it is relative and the rated current is unknown.
    pub fn to_amperes(&self, unit: &str, value: f64) -> Option<f64> {
        let per = match unit {
            "A" => return Some(value),
            "‰" => 1000.0,
            "%" => 100.0,
            _ => return None,
        };
        self.rated_current_a.filter(|r| r.is_finite() && *r > 0.0).map(|rated| value * rated / per)
    }

    /// Amperes in a current-like entry's unit (‰, % or A); `None` when it needs the rated
    /// current and that is unknown.
    pub fn from_amperes(&self, unit: &str, amperes: f64) -> Option<f64> {
        let per = match unit {
            "A" => return Some(amperes),
            "‰" => 1000.0,
            "%" => 100.0,
            _ => return None,
        };
        self.rated_current_a.filter(|r| r.is_finite() && *r > 0.0).map(|rated| amperes / rated * per)
    }

    /// Read requests that cover `wanted` (entry indices): entries whose registers follow each
    /// other are read together, across gaps of at most `max_bridge` registers, but only where
    /// every address read belongs to some entry of the map (a strict drive answers an unmapped
    /// address with exception 02), and never more than `max_read_registers` at once. An entry
    /// is never split over two reads.
    pub fn blocks(&self, wanted: &[usize], max_bridge: u16) -> Vec<Block> {
        let limit = u32::from(self.max_read_registers.clamp(1, MAX_READ_QTY));
        let mut wanted: Vec<&RegisterEntry> = wanted.iter().filter_map(|&i| self.entries.get(i)).collect();
        wanted.sort_by_key(|e| (e.table == Table::Input, e.address));
        wanted.dedup_by_key(|e| (e.table, e.address));
        let mut blocks: Vec<Block> = Vec::new();
        let mut current: Option<(Table, u32, u32)> = None;
        for e in wanted {
            if e.end() > 0x1_0000 {
                continue;
            }
            let start = u32::from(e.address);
            if let Some((table, block_start, block_end)) = current {
                let joinable = table == e.table
                    && e.end().max(block_end) - block_start <= limit
                    && (start <= block_end
                        || (start - block_end <= u32::from(max_bridge)
                            && (block_end..start).all(|a| self.entry_at(table, a as u16).is_some())));
                if joinable {
                    current = Some((table, block_start, block_end.max(e.end())));
                    continue;
                }
                blocks.push(Block {
                    table,
                    start: block_start as u16,
                    qty: (block_end - block_start) as u16,
                });
            }
            current = Some((e.table, start, e.end()));
        }
        if let Some((table, start, end)) = current {
            blocks.push(Block { table, start: start as u16, qty: (end - start) as u16 });
        }
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_matches_the_emulator_table() {
        let map = RegisterMap::preset();
        map.validate().unwrap();
        let table: Vec<(&str, u16, RegType, Access)> =
            map.entries.iter().map(|e| (e.name.as_str(), e.address, e.kind, e.access)).collect();
        use Access::*;
        use RegType::*;
        assert_eq!(
            table,
            vec![
                ("controlword", 0x00, U16, ReadWrite),
                ("statusword", 0x01, U16, ReadOnly),
                ("modes_of_operation", 0x02, I16, ReadWrite),
                ("modes_display", 0x03, I16, ReadOnly),
                ("target_velocity", 0x04, I32, ReadWrite),
                ("velocity_actual", 0x06, I32, ReadOnly),
                ("target_position", 0x08, I32, ReadWrite),
                ("position_actual", 0x0A, I32, ReadOnly),
                ("target_torque", 0x0C, I16, ReadWrite),
                ("torque_actual", 0x0D, I16, ReadOnly),
                ("current_actual", 0x0E, I16, ReadOnly),
                ("error_code", 0x0F, U16, ReadOnly),
                ("dc_link_voltage", 0x10, U32, ReadOnly),
                ("temperature", 0x12, I16, ReadOnly),
                ("velocity_kp", 0x20, U16, ReadWrite),
                ("velocity_ki", 0x21, U16, ReadWrite),
                ("current_limit", 0x22, U16, ReadWrite),
                ("max_velocity", 0x23, U16, ReadWrite),
            ]
        );
        let e = |name: &str| &map.entries[map.index_of(name).unwrap()];
        assert_eq!((e("position_actual").scale, e("position_actual").unit.as_str()), (0.001, "rev"));
        assert_eq!((e("current_actual").scale, e("current_actual").unit.as_str()), (0.01, "A"));
        assert_eq!((e("dc_link_voltage").scale, e("dc_link_voltage").unit.as_str()), (0.001, "V"));
        assert_eq!((e("temperature").scale, e("temperature").unit.as_str()), (0.1, "°C"));
        assert_eq!((e("velocity_kp").scale, e("velocity_ki").scale), (0.001, 0.001));
        assert_eq!((e("current_limit").scale, e("current_limit").unit.as_str()), (0.01, "A"));
        assert_eq!((e("max_velocity").scale, e("max_velocity").unit.as_str()), (1.0, "rpm"));
        assert_eq!(map.word_order, WordOrder::HighFirst);
        let catalogue: Vec<&str> = (0..map.entries.len())
            .filter(|&i| map.is_catalogue(i))
            .map(|i| map.entries[i].name.as_str())
            .collect();
        assert_eq!(catalogue, vec!["velocity_kp", "velocity_ki", "current_limit", "max_velocity"]);
    }

    #[test]
    fn ron_round_trip() {
        let map = RegisterMap::preset();
        let text = ron::ser::to_string_pretty(&map, ron::ser::PrettyConfig::default()).unwrap();
        let back: RegisterMap = ron::from_str(&text).unwrap();
        assert_eq!(back, map);
        // Defaults fill what a hand-written file leaves out.
        let small: RegisterMap = ron::from_str(
            "(entries: [(name: \"statusword\", address: 0x3200, role: Some(Statusword)), \
             (name: \"controlword\", address: 0x3100, access: ReadWrite, role: Some(Controlword)), \
             (name: \"target_velocity\", address: 0x6F00, kind: I32, word_order: Some(LowFirst), \
             access: ReadWrite, unit: \"rpm\", scale: 0.0003662109375, role: Some(TargetVelocity))])",
        )
        .unwrap();
        small.validate().unwrap();
        assert_eq!(small.max_read_registers, 125);
        assert_eq!(small.entries[0].kind, RegType::U16);
        assert_eq!(small.entries[0].scale, 1.0);
        assert_eq!(small.entries[0].access, Access::ReadOnly);
        // Unknown fields are refused.
        assert!(ron::from_str::<RegisterMap>("(entries: [(name: \"x\", adress: 1)])").is_err());
        assert!(ron::from_str::<RegisterMap>("(entrys: [])").is_err());
    }

    #[test]
    fn validation_names_each_problem() {
        let mut map = RegisterMap::preset();
        map.entries.push(RegisterEntry {
            name: "overlapping".into(),
            address: 0x0005,
            kind: RegType::U32,
            ..RegisterEntry::default()
        });
        map.entries.push(RegisterEntry {
            name: "velocity_kp".into(),
            address: 0x0030,
            ..RegisterEntry::default()
        });
        map.entries.push(RegisterEntry {
            name: "wide_at_end".into(),
            address: 0xFFFF,
            kind: RegType::I32,
            ..RegisterEntry::default()
        });
        map.entries.push(RegisterEntry {
            name: "second_status".into(),
            address: 0x0040,
            role: Some(Role::Statusword),
            ..RegisterEntry::default()
        });
        map.entries.push(RegisterEntry {
            name: "Bad Name".into(),
            address: 0x0041,
            ..RegisterEntry::default()
        });
        map.entries.push(RegisterEntry {
            name: "zero_scale".into(),
            address: 0x0042,
            scale: 0.0,
            ..RegisterEntry::default()
        });
        map.entries.push(RegisterEntry {
            name: "upside_down".into(),
            address: 0x0043,
            min: Some(5.0),
            max: Some(1.0),
            ..RegisterEntry::default()
        });
        map.max_read_registers = 200;
        let err = map.validate().unwrap_err();
        for needle in [
            "overlapping (0x0005–0x0006) overlaps target_velocity (0x0004–0x0005)",
            "overlapping (0x0005–0x0006) overlaps velocity_actual (0x0006–0x0007)",
            "velocity_kp is named twice",
            "runs past the last address 0xFFFF",
            "second_status and statusword both have the role Statusword",
            "Bad Name: names are snake_case",
            "zero_scale: scale must be",
            "upside_down: min 5 is above max 1",
            "max_read_registers is 200",
        ] {
            assert!(err.contains(needle), "missing `{needle}` in: {err}");
        }

        // Missing roles needed for control, units of roles, 32-bit types.
        let mut map = RegisterMap::preset();
        map.entries.retain(|e| e.role != Some(Role::Statusword) && e.role != Some(Role::ModesOfOperation));
        map.entries.retain(|e| e.role != Some(Role::ModesDisplay));
        let err = map.validate().unwrap_err();
        assert!(err.contains("a controlword needs a statusword"), "{err}");
        assert!(err.contains("needs a controlword and a statusword to enable"), "{err}");
        assert!(err.contains("3 targets but no modes_of_operation"), "{err}");

        let mut map = RegisterMap::preset();
        let i = map.index_of("velocity_actual").unwrap();
        map.entries[i].unit = "rad/s".into();
        let i = map.index_of("statusword").unwrap();
        map.entries[i].kind = RegType::U32;
        let i = map.index_of("controlword").unwrap();
        map.entries[i].access = Access::ReadOnly;
        map.rated_current_a = Some(-1.0);
        let err = map.validate().unwrap_err();
        assert!(err.contains("velocity_actual: the velocity actual is in `rpm`"), "{err}");
        assert!(err.contains("statusword: the statusword is a 16-bit integer"), "{err}");
        assert!(err.contains("controlword: the controlword must be ReadWrite"), "{err}");
        assert!(err.contains("rated_current_a must be a positive"), "{err}");

        assert!(RegisterMap::default().validate().unwrap_err().contains("no entries"));
    }

    #[test]
    fn values_encode_and_decode_per_type_and_word_order() {
        let e = RegisterEntry {
            name: "v".into(),
            kind: RegType::I32,
            access: Access::ReadWrite,
            ..RegisterEntry::default()
        };
        assert_eq!(e.encode(0x0008_5555 as f64, WordOrder::LowFirst).unwrap(), vec![0x5555, 0x0008]);
        assert_eq!(e.encode(0x0008_5555 as f64, WordOrder::HighFirst).unwrap(), vec![0x0008, 0x5555]);
        assert_eq!(e.encode(-2.0, WordOrder::HighFirst).unwrap(), vec![0xFFFF, 0xFFFE]);
        assert_eq!(e.decode(&[0xFFFF, 0xFFFE], WordOrder::HighFirst).unwrap(), -2.0);
        assert_eq!(e.decode(&[0xFFFE, 0xFFFF], WordOrder::LowFirst).unwrap(), -2.0);
        assert!(e.decode(&[1], WordOrder::HighFirst).is_err());
        assert!(e.encode(3e9, WordOrder::HighFirst).is_err());
        assert!(e.encode(f64::NAN, WordOrder::HighFirst).is_err());

        let scaled =
            RegisterEntry { kind: RegType::U16, scale: 0.01, min: Some(0.1), max: Some(50.0), ..e.clone() };
        assert_eq!(scaled.encode(7.5, WordOrder::HighFirst).unwrap(), vec![750]);
        assert_eq!(scaled.decode(&[750], WordOrder::HighFirst).unwrap(), 7.5);
        let err = scaled.encode(60.0, WordOrder::HighFirst).unwrap_err();
        assert!(err.to_string().contains("outside the register's range 0.1 … 50"), "{err}");
        assert!(scaled.encode(0.05, WordOrder::HighFirst).is_err());
        assert_eq!(scaled.quantize(1.234, WordOrder::HighFirst).unwrap(), 1.23);

        let signed = RegisterEntry { kind: RegType::I16, ..e.clone() };
        assert_eq!(signed.encode(-1.0, WordOrder::HighFirst).unwrap(), vec![0xFFFF]);
        assert_eq!(signed.decode(&[0x8000], WordOrder::HighFirst).unwrap(), -32768.0);
        assert!(signed.encode(40_000.0, WordOrder::HighFirst).is_err());

        let unsigned = RegisterEntry { kind: RegType::U32, scale: 0.001, ..e.clone() };
        assert_eq!(unsigned.encode(24.5, WordOrder::HighFirst).unwrap(), vec![0, 24_500]);
        assert!(unsigned.encode(-0.5, WordOrder::HighFirst).is_err());

        let float = RegisterEntry { kind: RegType::F32, ..e };
        assert_eq!(float.encode(1.5, WordOrder::HighFirst).unwrap(), vec![0x3FC0, 0x0000]);
        assert_eq!(float.decode(&[0x0000, 0x3FC0], WordOrder::LowFirst).unwrap(), 1.5);
        assert!(float.decode(&[0x7FC0, 0], WordOrder::HighFirst).is_err(), "NaN is not a value");
        assert!(float.decode(&[0x7F80, 0], WordOrder::HighFirst).is_err(), "inf is not a value");
        assert!(float.encode(1e300, WordOrder::HighFirst).is_err());
    }

    #[test]
    fn blocks_join_only_mapped_neighbours() {
        let map = RegisterMap::preset();
        let idx = |name: &str| map.index_of(name).unwrap();
        let telemetry = [
            idx("statusword"),
            idx("modes_display"),
            idx("velocity_actual"),
            idx("position_actual"),
            idx("current_actual"),
            idx("error_code"),
            idx("dc_link_voltage"),
            idx("temperature"),
        ];
        assert_eq!(
            map.blocks(&telemetry, 16),
            vec![Block { table: Table::Holding, start: 0x0001, qty: 0x12 }]
        );
        // 0x0013–0x001F are not in the map: never read across them.
        assert_eq!(
            map.blocks(&[idx("temperature"), idx("velocity_kp")], 16),
            vec![
                Block { table: Table::Holding, start: 0x0012, qty: 1 },
                Block { table: Table::Holding, start: 0x0020, qty: 1 },
            ]
        );
        assert_eq!(
            map.blocks(&[idx("max_velocity"), idx("velocity_kp")], 16),
            vec![Block { table: Table::Holding, start: 0x0020, qty: 4 }]
        );
        // Gaps wider than the bridge, or reads longer than the limit, split.
        assert_eq!(map.blocks(&[idx("statusword"), idx("temperature")], 4).len(), 2);
        let mut small = map.clone();
        small.max_read_registers = 4;
        let blocks = small.blocks(&telemetry, 16);
        assert!(blocks.iter().all(|b| b.qty <= 4), "{blocks:?}");
        for &i in &telemetry {
            assert_eq!(blocks.iter().filter(|b| b.contains(&map.entries[i])).count(), 1);
        }
    }

    #[test]
    fn amperes_convert_through_the_rated_current() {
        let map = RegisterMap::preset();
        assert_eq!(map.from_amperes("‰", 0.5), Some(100.0));
        assert_eq!(map.to_amperes("‰", 100.0), Some(0.5));
        assert_eq!(map.to_amperes("%", 10.0), Some(0.5));
        assert_eq!(map.to_amperes("A", 3.0), Some(3.0));
        let unrated = RegisterMap { rated_current_a: None, ..map };
        assert_eq!(unrated.from_amperes("‰", 0.5), None);
        assert_eq!(unrated.from_amperes("A", 0.5), Some(0.5));
    }
}
