//! Motor and drive parameter sets, the default tuning, and the parameter catalogue.

use serde::{Deserialize, Serialize};

use super::SimConfig;
use crate::drive::ParamSpec;

/// Seconds per minute over radians per revolution: multiply rad/s by this to get rpm.
pub(super) const RPM_PER_RAD_S: f64 = 60.0 / std::f64::consts::TAU;

/// Temperature at which [`MotorParams::resistance_ohm`] is specified.
pub(super) const RESISTANCE_REFERENCE_C: f64 = 25.0;

/// Electrical and mechanical model of the motor and of what is coupled to its shaft.
///
/// The electrical model is the DC-equivalent (q-axis) circuit of a BLDC/PMSM: one winding
/// resistance, one inductance and a back-EMF proportional to speed. In SI units the torque
/// constant and the back-EMF constant are the same number, so only one is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MotorParams {
    /// Winding resistance at 25 °C.
    pub resistance_ohm: f64,
    /// Relative rise of the resistance per kelvin (copper: 0.0039).
    pub resistance_temp_coeff_per_k: f64,
    pub inductance_h: f64,
    /// Torque per ampere, equal to the back-EMF constant in V·s/rad.
    pub torque_constant_nm_per_a: f64,
    /// Rotor plus everything coupled to the shaft (bench flywheel, reflected load).
    pub inertia_kgm2: f64,
    pub viscous_friction_nm_s_per_rad: f64,
    /// Coulomb (dry) friction; the same level is used as the breakaway (stiction) torque.
    pub coulomb_friction_nm: f64,
    /// Winding to ambient.
    pub thermal_resistance_k_per_w: f64,
    /// Heat capacity of the winding and what heats with it.
    pub thermal_capacitance_j_per_k: f64,
    pub ambient_temperature_c: f64,
    /// Constant load torque from the bench, signed: a positive value pulls towards negative
    /// rotation, like a weight hanging from a winch drum. It therefore opposes forward motion
    /// and back-drives the motor when it exceeds what the motor and friction can hold.
    pub load_torque_nm: f64,
}

impl Default for MotorParams {
    /// A 24 V, ~100 W BLDC on a small flywheel bench.
    fn default() -> Self {
        MotorParams {
            resistance_ohm: 0.3,
            resistance_temp_coeff_per_k: 0.0039,
            inductance_h: 0.3e-3,
            torque_constant_nm_per_a: 0.045,
            inertia_kgm2: 1.0e-4,
            viscous_friction_nm_s_per_rad: 1.0e-5,
            coulomb_friction_nm: 0.005,
            thermal_resistance_k_per_w: 4.0,
            // 4 K/W × 15 J/K = 60 s thermal time constant.
            thermal_capacitance_j_per_k: 15.0,
            ambient_temperature_c: 25.0,
            load_torque_nm: 0.0,
        }
    }
}

impl MotorParams {
    /// Winding resistance at a winding temperature.
    pub fn resistance_at_ohm(&self, temperature_c: f64) -> f64 {
        let factor = 1.0 + self.resistance_temp_coeff_per_k * (temperature_c - RESISTANCE_REFERENCE_C);
        // Only reachable with absurd inputs; a negative resistance would make the model
        // generate energy.
        (self.resistance_ohm * factor).max(0.0)
    }

    /// Speed the motor reaches without load at a terminal voltage, in rpm.
    pub fn no_load_speed_rpm(&self, voltage_v: f64) -> f64 {
        voltage_v / self.torque_constant_nm_per_a * RPM_PER_RAD_S
    }
}

/// The drive: supply, loop gains, limits, fault thresholds and measurement noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriveParams {
    /// Open-circuit voltage of the supply feeding the DC bus.
    pub bus_voltage_v: f64,
    /// Source resistance of the supply; the bus sags by this times the DC-link current.
    pub supply_resistance_ohm: f64,
    /// Current PI proportional gain, V/A.
    pub current_kp: f64,
    /// Current PI integral gain, V/(A·s).
    pub current_ki: f64,
    /// Speed PI proportional gain, A/rpm.
    pub speed_kp: f64,
    /// Speed PI integral gain, A/(rpm·s).
    pub speed_ki: f64,
    /// Position P gain, rpm per revolution of position error.
    pub position_kp: f64,
    /// Cruise speed of position moves (never above `speed_limit_rpm`).
    pub profile_speed_rpm: f64,
    /// Acceleration and deceleration of position moves.
    pub profile_accel_rpm_per_s: f64,
    /// Limit of the current reference, both signs.
    pub current_limit_a: f64,
    /// Limit of the speed reference, both signs; also enforced in current mode.
    pub speed_limit_rpm: f64,
    /// Instantaneous measured |current| above which the drive trips.
    pub overcurrent_trip_a: f64,
    pub overtemp_trip_c: f64,
    /// Largest |position reference − position| tolerated in position mode.
    pub following_error_rev: f64,
    /// Standard deviations of the Gaussian measurement noise.
    pub speed_noise_rpm: f64,
    pub current_noise_a: f64,
    pub voltage_noise_v: f64,
    /// Resolution of the position measurement.
    pub encoder_counts_per_rev: u32,
}

impl Default for DriveParams {
    fn default() -> Self {
        let mut drive = DriveParams {
            bus_voltage_v: 24.0,
            supply_resistance_ohm: 0.05,
            current_kp: 0.0,
            current_ki: 0.0,
            speed_kp: 0.0,
            speed_ki: 0.0,
            position_kp: 0.0,
            profile_speed_rpm: 3000.0,
            profile_accel_rpm_per_s: 20_000.0,
            // Below the project's default 8 A envelope, so that measurement noise on a current
            // held at the drive's limit never reads above the envelope.
            current_limit_a: 7.5,
            speed_limit_rpm: 4000.0,
            overcurrent_trip_a: 20.0,
            overtemp_trip_c: 120.0,
            following_error_rev: 2.0,
            speed_noise_rpm: 2.0,
            current_noise_a: 0.02,
            voltage_noise_v: 0.05,
            encoder_counts_per_rev: 4096,
        };
        drive.tune_for(&MotorParams::default(), LoopBandwidths::default());
        drive
    }
}

/// Target bandwidths for [`DriveParams::tune_for`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopBandwidths {
    pub current_hz: f64,
    pub speed_hz: f64,
    pub position_hz: f64,
}

impl Default for LoopBandwidths {
    /// Each loop well below the one inside it (current 1 kHz → speed 40 Hz → position 8 Hz),
    /// so that each sees the inner loop as nearly ideal. 40 Hz also keeps the speed loop's
    /// reaction to the 2 rpm measured-speed noise at about 0.1 A rms on the current
    /// reference.
    fn default() -> Self {
        LoopBandwidths { current_hz: 1000.0, speed_hz: 40.0, position_hz: 8.0 }
    }
}

impl DriveParams {
    /// Sets the loop gains from the motor model.
    ///
    /// * Current PI: pole–zero cancellation of the winding's R/L pole, Kp = L·ωc and
    ///   Ki = R·ωc, which leaves a first-order closed loop with bandwidth ωc (no overshoot).
    /// * Speed PI: crossover at ωs on the inertia, Kp = J·ωs/Kt, with the PI zero at ωs/5
    ///   (Ki = Kp·ωs/5): about 75° of phase margin, so steps that stay out of the current
    ///   limit overshoot only through the PI zero (≈ 15 %), and saturated steps barely.
    /// * Position P: ωp = Kp/60 in rad/s for Kp in rpm/rev; the profile adds velocity
    ///   feed-forward, so the P gain only removes the residual error.
    pub fn tune_for(&mut self, motor: &MotorParams, bandwidths: LoopBandwidths) {
        let current_rad_s = std::f64::consts::TAU * bandwidths.current_hz;
        let speed_rad_s = std::f64::consts::TAU * bandwidths.speed_hz;
        let position_rad_s = std::f64::consts::TAU * bandwidths.position_hz;
        self.current_kp = motor.inductance_h * current_rad_s;
        self.current_ki = motor.resistance_ohm * current_rad_s;
        // J·ωs/Kt is in A per rad/s; divide by rpm per rad/s to get A/rpm.
        self.speed_kp = motor.inertia_kgm2 * speed_rad_s / motor.torque_constant_nm_per_a / RPM_PER_RAD_S;
        self.speed_ki = self.speed_kp * speed_rad_s / 5.0;
        self.position_kp = position_rad_s * 60.0;
    }
}

/// One entry of the parameter catalogue, bound to the configuration field it reads and
/// writes. One table serves the catalogue, reads, writes and the sanitising of configs, so
/// they cannot drift apart.
pub(super) struct ParamDef {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub min: f64,
    pub max: f64,
    pub read_only: bool,
    pub help: &'static str,
    pub get: fn(&SimConfig) -> f64,
    /// Writes a value already checked against `min..=max`. Read-only entries have one too,
    /// used only to bring hand-edited configurations into range.
    pub set: fn(&mut SimConfig, f64),
}

impl ParamDef {
    pub fn spec(&self) -> ParamSpec {
        let spec = ParamSpec::new(self.key, self.label, self.unit, self.min, self.max, self.help);
        if self.read_only { spec.read_only() } else { spec }
    }
}

pub(super) fn find_param(key: &str) -> Option<&'static ParamDef> {
    PARAMS.iter().find(|def| def.key == key)
}

/// The catalogue, in the order a UI should list it: loop gains, limits, protection, bench,
/// telemetry, then the read-only motor description.
pub(super) const PARAMS: &[ParamDef] = &[
    ParamDef {
        key: "current_kp",
        label: "Current loop Kp",
        unit: "V/A",
        min: 0.0,
        max: 50.0,
        read_only: false,
        help: "Proportional gain of the current (torque) loop. Tuned value ≈ L·ωc for a bandwidth ωc. \
               Too high and the loop becomes unstable at the 20 kHz sampling rate (above ≈ 2·L/Ts).",
        get: |c| c.drive.current_kp,
        set: |c, v| c.drive.current_kp = v,
    },
    ParamDef {
        key: "current_ki",
        label: "Current loop Ki",
        unit: "V/(A·s)",
        min: 0.0,
        max: 100_000.0,
        read_only: false,
        help: "Integral gain of the current loop. Ki/Kp = R/L cancels the winding's electrical pole.",
        get: |c| c.drive.current_ki,
        set: |c, v| c.drive.current_ki = v,
    },
    ParamDef {
        key: "speed_kp",
        label: "Speed loop Kp",
        unit: "A/rpm",
        min: 0.0,
        max: 2.0,
        read_only: false,
        help: "Proportional gain of the speed loop: current reference per rpm of speed error. \
               Higher is stiffer but amplifies speed-measurement noise into the current.",
        get: |c| c.drive.speed_kp,
        set: |c, v| c.drive.speed_kp = v,
    },
    ParamDef {
        key: "speed_ki",
        label: "Speed loop Ki",
        unit: "A/(rpm·s)",
        min: 0.0,
        max: 100.0,
        read_only: false,
        help: "Integral gain of the speed loop; removes the steady speed error under load. \
               Too high gives overshoot and ringing.",
        get: |c| c.drive.speed_ki,
        set: |c, v| c.drive.speed_ki = v,
    },
    ParamDef {
        key: "position_kp",
        label: "Position loop Kp",
        unit: "rpm/rev",
        min: 0.0,
        max: 20_000.0,
        read_only: false,
        help: "Speed correction per revolution of position error, added to the profile's velocity \
               feed-forward. The position bandwidth in rad/s is Kp/60.",
        get: |c| c.drive.position_kp,
        set: |c, v| c.drive.position_kp = v,
    },
    ParamDef {
        key: "profile_speed_rpm",
        label: "Move speed",
        unit: "rpm",
        min: 1.0,
        max: 20_000.0,
        read_only: false,
        help: "Cruise speed of position moves. The speed limit still applies.",
        get: |c| c.drive.profile_speed_rpm,
        set: |c, v| c.drive.profile_speed_rpm = v,
    },
    ParamDef {
        key: "profile_accel_rpm_per_s",
        label: "Move acceleration",
        unit: "rpm/s",
        min: 10.0,
        max: 1_000_000.0,
        read_only: false,
        help: "Acceleration and deceleration of position moves. Keep it below what the current \
               limit can deliver (Kt·I/J), or the motor lags the profile.",
        get: |c| c.drive.profile_accel_rpm_per_s,
        set: |c, v| c.drive.profile_accel_rpm_per_s = v,
    },
    ParamDef {
        key: "current_limit_a",
        label: "Current limit",
        unit: "A",
        min: 0.1,
        max: 50.0,
        read_only: false,
        help: "Largest current reference in every mode, both signs. Sets the peak torque (Kt·I).",
        get: |c| c.drive.current_limit_a,
        set: |c, v| c.drive.current_limit_a = v,
    },
    ParamDef {
        key: "speed_limit_rpm",
        label: "Speed limit",
        unit: "rpm",
        min: 1.0,
        max: 20_000.0,
        read_only: false,
        help: "Largest speed reference, both signs. In current mode the drive reduces the current \
               when the speed exceeds it.",
        get: |c| c.drive.speed_limit_rpm,
        set: |c, v| c.drive.speed_limit_rpm = v,
    },
    ParamDef {
        key: "overcurrent_trip_a",
        label: "Over-current trip",
        unit: "A",
        min: 0.1,
        max: 200.0,
        read_only: false,
        help: "The drive trips and latches a fault the instant the measured |current| exceeds this. \
               Keep it well above the current limit.",
        get: |c| c.drive.overcurrent_trip_a,
        set: |c, v| c.drive.overcurrent_trip_a = v,
    },
    ParamDef {
        key: "overtemp_trip_c",
        label: "Over-temperature trip",
        unit: "°C",
        min: 0.0,
        max: 250.0,
        read_only: false,
        help: "The drive trips and latches a fault when the winding temperature exceeds this.",
        get: |c| c.drive.overtemp_trip_c,
        set: |c, v| c.drive.overtemp_trip_c = v,
    },
    ParamDef {
        key: "following_error_rev",
        label: "Following-error limit",
        unit: "rev",
        min: 0.001,
        max: 1000.0,
        read_only: false,
        help: "In position mode the drive trips when |position reference − position| exceeds this.",
        get: |c| c.drive.following_error_rev,
        set: |c, v| c.drive.following_error_rev = v,
    },
    ParamDef {
        key: "load_torque_nm",
        label: "Load torque",
        unit: "N·m",
        min: -2.0,
        max: 2.0,
        read_only: false,
        help: "Constant torque of the bench load, signed: positive pulls towards negative rotation \
               (like a hanging weight), so it opposes forward motion and back-drives the motor if \
               larger than the motor's torque.",
        get: |c| c.motor.load_torque_nm,
        set: |c, v| c.motor.load_torque_nm = v,
    },
    ParamDef {
        key: "bus_voltage_v",
        label: "Supply voltage",
        unit: "V",
        min: 5.0,
        max: 100.0,
        read_only: false,
        help: "Open-circuit voltage of the supply. The measured bus sags slightly under load. \
               The drive can apply at most 95 % of the bus to the motor.",
        get: |c| c.drive.bus_voltage_v,
        set: |c, v| c.drive.bus_voltage_v = v,
    },
    ParamDef {
        key: "ambient_temperature_c",
        label: "Ambient temperature",
        unit: "°C",
        min: -40.0,
        max: 80.0,
        read_only: false,
        help: "Temperature the winding cools towards.",
        get: |c| c.motor.ambient_temperature_c,
        set: |c, v| c.motor.ambient_temperature_c = v,
    },
    ParamDef {
        key: "speed_noise_rpm",
        label: "Speed noise",
        unit: "rpm",
        min: 0.0,
        max: 100.0,
        read_only: false,
        help: "Standard deviation of the Gaussian noise on the speed measurement.",
        get: |c| c.drive.speed_noise_rpm,
        set: |c, v| c.drive.speed_noise_rpm = v,
    },
    ParamDef {
        key: "current_noise_a",
        label: "Current noise",
        unit: "A",
        min: 0.0,
        max: 5.0,
        read_only: false,
        help: "Standard deviation of the Gaussian noise on the current measurement.",
        get: |c| c.drive.current_noise_a,
        set: |c, v| c.drive.current_noise_a = v,
    },
    ParamDef {
        key: "voltage_noise_v",
        label: "Voltage noise",
        unit: "V",
        min: 0.0,
        max: 5.0,
        read_only: false,
        help: "Standard deviation of the Gaussian noise on the bus-voltage measurement.",
        get: |c| c.drive.voltage_noise_v,
        set: |c, v| c.drive.voltage_noise_v = v,
    },
    ParamDef {
        key: "telemetry_rate_hz",
        label: "Telemetry rate",
        unit: "Hz",
        min: 10.0,
        max: 10_000.0,
        read_only: false,
        help: "Telemetry frames per second of simulated time. Frames are taken at the 20 kHz control \
               instants, so rates that divide 20 kHz are exactly evenly spaced.",
        get: |c| c.telemetry_rate_hz,
        set: |c, v| c.telemetry_rate_hz = v,
    },
    ParamDef {
        key: "motor_resistance_ohm",
        label: "Winding resistance (25 °C)",
        unit: "Ω",
        min: 0.001,
        max: 100.0,
        read_only: true,
        help: "Phase-equivalent winding resistance at 25 °C; it rises 0.39 %/K with temperature.",
        get: |c| c.motor.resistance_ohm,
        set: |c, v| c.motor.resistance_ohm = v,
    },
    ParamDef {
        key: "motor_inductance_h",
        label: "Winding inductance",
        unit: "H",
        min: 1.0e-6,
        max: 1.0,
        read_only: true,
        help: "Phase-equivalent winding inductance; L/R is the electrical time constant.",
        get: |c| c.motor.inductance_h,
        set: |c, v| c.motor.inductance_h = v,
    },
    ParamDef {
        key: "torque_constant_nm_per_a",
        label: "Torque constant",
        unit: "N·m/A",
        min: 1.0e-4,
        max: 10.0,
        read_only: true,
        help: "Torque per ampere; in SI units also the back-EMF constant in V·s/rad.",
        get: |c| c.motor.torque_constant_nm_per_a,
        set: |c, v| c.motor.torque_constant_nm_per_a = v,
    },
    ParamDef {
        key: "inertia_kgm2",
        label: "Inertia",
        unit: "kg·m²",
        min: 1.0e-7,
        max: 10.0,
        read_only: true,
        help: "Rotor plus bench inertia seen at the shaft.",
        get: |c| c.motor.inertia_kgm2,
        set: |c, v| c.motor.inertia_kgm2 = v,
    },
    ParamDef {
        key: "viscous_friction_nm_s_per_rad",
        label: "Viscous friction",
        unit: "N·m·s/rad",
        min: 0.0,
        max: 1.0,
        read_only: true,
        help: "Friction torque proportional to speed.",
        get: |c| c.motor.viscous_friction_nm_s_per_rad,
        set: |c, v| c.motor.viscous_friction_nm_s_per_rad = v,
    },
    ParamDef {
        key: "coulomb_friction_nm",
        label: "Coulomb friction",
        unit: "N·m",
        min: 0.0,
        max: 5.0,
        read_only: true,
        help: "Dry friction opposing motion; a motor at rest stays at rest until the driving torque \
               exceeds it.",
        get: |c| c.motor.coulomb_friction_nm,
        set: |c, v| c.motor.coulomb_friction_nm = v,
    },
    ParamDef {
        key: "thermal_resistance_k_per_w",
        label: "Thermal resistance",
        unit: "K/W",
        min: 0.01,
        max: 100.0,
        read_only: true,
        help: "Winding-to-ambient thermal resistance: the steady temperature rise per watt of copper loss.",
        get: |c| c.motor.thermal_resistance_k_per_w,
        set: |c, v| c.motor.thermal_resistance_k_per_w = v,
    },
    ParamDef {
        key: "thermal_capacitance_j_per_k",
        label: "Thermal capacitance",
        unit: "J/K",
        min: 0.01,
        max: 100_000.0,
        read_only: true,
        help: "Heat capacity of the winding; times the thermal resistance it gives the thermal time \
               constant.",
        get: |c| c.motor.thermal_capacitance_j_per_k,
        set: |c, v| c.motor.thermal_capacitance_j_per_k = v,
    },
    ParamDef {
        key: "supply_resistance_ohm",
        label: "Supply source resistance",
        unit: "Ω",
        min: 0.0,
        max: 10.0,
        read_only: true,
        help: "Internal resistance of the supply; the bus sags by this times the DC-link current.",
        get: |c| c.drive.supply_resistance_ohm,
        set: |c, v| c.drive.supply_resistance_ohm = v,
    },
    ParamDef {
        key: "encoder_counts_per_rev",
        label: "Encoder resolution",
        unit: "counts/rev",
        min: 16.0,
        max: 16_777_216.0,
        read_only: true,
        help: "Position measurement resolution; the measured position is a whole number of counts.",
        get: |c| f64::from(c.drive.encoder_counts_per_rev),
        // The value is range-checked before it gets here, so the cast cannot truncate.
        set: |c, v| c.drive.encoder_counts_per_rev = v.round() as u32,
    },
];
