//! A simulated BLDC motor on a bench, driven by a simulated servo drive: the default "drive" of
//! the app, and a plant that tests can run faster than real time.
//!
//! # Model
//! * **Motor** ([`MotorParams`]): DC-equivalent (q-axis) winding, L·di/dt = v − R(T)·i − Ke·ω,
//!   integrated exactly for a constant voltage over each step; shaft J·dω/dt = Kt·i − load −
//!   B·ω − Coulomb friction, with stiction; copper resistance rising 0.39 %/K; first-order
//!   thermal model C·dT/dt = i²·R(T) − (T − T_amb)/R_th.
//! * **Drive** ([`DriveParams`]): a supply with source resistance feeding the DC bus, a
//!   power stage that applies at most 95 % of the measured bus, and cascaded loops: position P
//!   with a trapezoidal move profile and velocity feed-forward → speed PI → current PI with
//!   back-EMF feed-forward. Every integrator has anti-windup, including against saturation
//!   of the loop inside it. The loops act on *measured* signals, noise included.
//! * **Timing**: a fixed 50 µs step (20 kHz). Each step measures, checks protections, runs all
//!   loops and then advances the plant with the new voltage held for the step.
//! * **Protection**: over-current, over-temperature and following error latch a fault and switch
//!   the power stage off until [`SimDrive::reset_faults`].
//! * **Noise**: Gaussian, from a ChaCha8 generator seeded by [`SimConfig::seed`]; the same seed
//!   and the same calls give bit-identical telemetry.

mod control;
pub mod device;
pub mod emulator;
mod motor;
mod params;
#[cfg(test)]
mod tests;

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::drive::{ControlMode, LimitError, ParamSpec};
use control::{MotionProfile, PiController, PiGains, Saturation, limit};
use motor::{Plant, PowerStage, Supply};
pub use params::{DriveParams, LoopBandwidths, MotorParams};
use params::{PARAMS, RPM_PER_RAD_S, find_param};

/// Internal step rate of the simulation and of every control loop.
pub const STEP_RATE_HZ: f64 = 20_000.0;
/// Internal step, 50 µs.
pub const STEP_S: f64 = 1.0 / STEP_RATE_HZ;
/// Largest PWM duty: the last 5 % are left for dead time and current sampling.
pub const MAX_DUTY: f64 = 0.95;
/// Fraction of the speed limit over which current mode's over-speed limiter acts.
const OVERSPEED_TAPER: f64 = 0.05;

/// Everything that defines one simulated drive and motor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    pub motor: MotorParams,
    pub drive: DriveParams,
    /// Seed of the measurement noise.
    pub seed: u64,
    /// Telemetry frames per second of simulated time.
    pub telemetry_rate_hz: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            motor: MotorParams::default(),
            drive: DriveParams::default(),
            seed: 0x5eed,
            telemetry_rate_hz: 1000.0,
        }
    }
}

impl SimConfig {
    /// A second, clearly different bench: a 48 V, ~400 W motor driving a geared load — more
    /// than twice the torque constant, eight times the inertia, gearbox friction, a slower
    /// thermal response — with gains tuned for it.
    pub fn alternative() -> Self {
        let motor = MotorParams {
            resistance_ohm: 0.25,
            resistance_temp_coeff_per_k: 0.0039,
            inductance_h: 0.6e-3,
            torque_constant_nm_per_a: 0.12,
            inertia_kgm2: 8.0e-4,
            viscous_friction_nm_s_per_rad: 1.0e-4,
            coulomb_friction_nm: 0.03,
            thermal_resistance_k_per_w: 2.0,
            // 2 K/W × 60 J/K = 120 s.
            thermal_capacitance_j_per_k: 60.0,
            ambient_temperature_c: 25.0,
            load_torque_nm: 0.0,
        };
        let mut drive = DriveParams {
            bus_voltage_v: 48.0,
            supply_resistance_ohm: 0.08,
            profile_speed_rpm: 2000.0,
            profile_accel_rpm_per_s: 5000.0,
            current_limit_a: 8.0,
            speed_limit_rpm: 3000.0,
            overcurrent_trip_a: 25.0,
            overtemp_trip_c: 130.0,
            following_error_rev: 1.0,
            speed_noise_rpm: 1.5,
            current_noise_a: 0.03,
            voltage_noise_v: 0.1,
            encoder_counts_per_rev: 8192,
            ..DriveParams::default()
        };
        drive.tune_for(&motor, LoopBandwidths { current_hz: 800.0, speed_hz: 25.0, position_hz: 5.0 });
        SimConfig { motor, drive, seed: 0xa17e, telemetry_rate_hz: 1000.0 }
    }

    /// This configuration with every catalogued value brought into its catalogue range and
    /// non-finite values replaced by the default, so that a hand-edited file can neither
    /// panic the model nor make it blow up.
    pub fn sanitized(&self) -> SimConfig {
        let defaults = SimConfig::default();
        let mut config = self.clone();
        for def in PARAMS {
            let value = (def.get)(&config);
            let value = if value.is_finite() { limit(value, def.min, def.max) } else { (def.get)(&defaults) };
            (def.set)(&mut config, value);
        }
        let motor = &mut config.motor;
        if !motor.resistance_temp_coeff_per_k.is_finite() {
            motor.resistance_temp_coeff_per_k = defaults.motor.resistance_temp_coeff_per_k;
        }
        motor.resistance_temp_coeff_per_k = limit(motor.resistance_temp_coeff_per_k, 0.0, 0.01);
        config
    }
}

/// One telemetry sample of all signals, taken at a control instant.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TelemetryFrame {
    /// Simulation time of this frame.
    pub t_s: f64,
    /// Measured mechanical speed, with measurement noise.
    pub speed_rpm: f64,
    /// Measured torque-producing current, with measurement noise.
    pub current_a: f64,
    /// Measured mechanical position, multi-turn, quantised to encoder counts.
    pub position_rev: f64,
    /// Measured DC bus voltage, with measurement noise.
    pub voltage_v: f64,
    /// Winding temperature.
    pub temperature_c: f64,
    /// The speed loop's reference: the setpoint in speed mode, the position loop's output in
    /// position mode. In current mode the speed loop is idle and this tracks the measured
    /// speed, so that the speed error shows as zero rather than as a meaningless value.
    pub speed_setpoint_rpm: f64,
    /// The current loop's reference after all limits; 0 while the power stage is off.
    pub current_setpoint_a: f64,
    /// The move profile's present reference in position mode (it travels to the setpoint at
    /// the profile speed); the measured position in the other modes.
    pub position_setpoint_rev: f64,
}

impl TelemetryFrame {
    /// Name and unit of each value of [`TelemetryFrame::values`].
    pub const SIGNALS: [(&'static str, &'static str); 8] = [
        ("speed_rpm", "rpm"),
        ("current_a", "A"),
        ("position_rev", "rev"),
        ("voltage_v", "V"),
        ("temperature_c", "°C"),
        ("speed_setpoint_rpm", "rpm"),
        ("current_setpoint_a", "A"),
        ("position_setpoint_rev", "rev"),
    ];

    /// The signal values in the order of [`TelemetryFrame::SIGNALS`].
    pub fn values(&self) -> [f64; 8] {
        [
            self.speed_rpm,
            self.current_a,
            self.position_rev,
            self.voltage_v,
            self.temperature_c,
            self.speed_setpoint_rpm,
            self.current_setpoint_a,
            self.position_setpoint_rev,
        ]
    }
}

/// A protection that tripped. It carries the value that tripped it and the threshold.
#[derive(Debug, Clone, PartialEq)]
pub enum SimFault {
    /// The measured current (signed) exceeded `overcurrent_trip_a` in magnitude.
    OverCurrent { current_a: f64, trip_a: f64 },
    /// The winding temperature exceeded `overtemp_trip_c`.
    OverTemperature { temperature_c: f64, trip_c: f64 },
    /// In position mode, reference − measured position (signed) exceeded
    /// `following_error_rev` in magnitude.
    FollowingError { error_rev: f64, limit_rev: f64 },
}

impl fmt::Display for SimFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimFault::OverCurrent { current_a, trip_a } => {
                write!(f, "over-current: |i| = {:.2} A exceeded {trip_a} A", current_a.abs())
            }
            SimFault::OverTemperature { temperature_c, trip_c } => {
                write!(f, "over-temperature: winding at {temperature_c:.1} °C exceeded {trip_c} °C")
            }
            SimFault::FollowingError { error_rev, limit_rev } => {
                write!(f, "following error: |error| = {:.3} rev exceeded {limit_rev} rev", error_rev.abs())
            }
        }
    }
}

/// Why the simulated drive refused a request.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SimError {
    #[error("cannot enable while a fault is latched ({0}); reset faults first")]
    Faulted(SimFault),
    /// Unknown key, read-only key, non-finite or out-of-range value.
    #[error(transparent)]
    Param(#[from] LimitError),
}

/// The measurements of one control instant.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Measurement {
    speed_rpm: f64,
    current_a: f64,
    position_rev: f64,
    bus_voltage_v: f64,
}

/// The references of one control instant.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct References {
    speed_rpm: f64,
    current_a: f64,
    position_rev: f64,
}

/// A simulated servo drive with its motor.
#[derive(Debug, Clone)]
pub struct SimDrive {
    config: SimConfig,
    rng: ChaCha8Rng,
    plant: Plant,
    mode: ControlMode,
    /// In the units of `mode`, already within the drive's own limits.
    setpoint: f64,
    enabled: bool,
    fault: Option<SimFault>,
    speed_pi: PiController,
    current_pi: PiController,
    /// Saturation of the current loop at the last step, for the speed loop's anti-windup.
    current_loop_saturation: Saturation,
    profile: MotionProfile,
    /// Measurements of the last step, for decisions taken between steps (mode changes).
    last_measurement: Measurement,
    last_references: References,
    /// Steps taken since start; the simulation time is this over [`STEP_RATE_HZ`].
    steps: u64,
    /// Requested time not yet simulated, less than one step.
    pending_s: f64,
    /// Frame `n` of the telemetry schedule falls on the first step at or after
    /// `frame_anchor_step + n·STEP_RATE_HZ/rate`; counting from an anchor instead of adding
    /// up periods keeps the average rate exact at any rate.
    frame_anchor_step: u64,
    frame_index: u64,
    next_frame_step: u64,
}

impl SimDrive {
    /// A drive at rest, disabled, in speed mode with a zero setpoint, at simulation time 0.
    pub fn new(config: &SimConfig) -> Self {
        let config = config.sanitized();
        let plant = Plant::at_rest(&config.motor, supply(&config.drive));
        let mut drive = SimDrive {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            last_measurement: Measurement { bus_voltage_v: plant.bus_voltage_v, ..Measurement::default() },
            plant,
            config,
            mode: ControlMode::Speed,
            setpoint: 0.0,
            enabled: false,
            fault: None,
            speed_pi: PiController::default(),
            current_pi: PiController::default(),
            current_loop_saturation: Saturation::None,
            profile: MotionProfile::default(),
            last_references: References::default(),
            steps: 0,
            pending_s: 0.0,
            frame_anchor_step: 0,
            frame_index: 0,
            next_frame_step: 0,
        };
        drive.restart_telemetry_schedule();
        drive
    }

    /// Simulated time: the steps taken so far. A fraction of a step requested by
    /// [`SimDrive::advance`] is carried, not counted, until it adds up to a whole step.
    pub fn time_s(&self) -> f64 {
        self.steps as f64 / STEP_RATE_HZ
    }

    /// Switches the power stage on. Refused while a fault is latched. The integrators start
    /// from zero. In position mode the setpoint becomes the present position and the move
    /// profile starts from the present position and speed: a shaft at rest stays put, and one
    /// still coasting is braked along the profile and brought back, without a jump.
    pub fn enable(&mut self) -> Result<(), SimError> {
        if let Some(fault) = &self.fault {
            return Err(SimError::Faulted(fault.clone()));
        }
        if self.enabled {
            return Ok(());
        }
        self.speed_pi = PiController::default();
        self.current_pi = PiController::default();
        self.current_loop_saturation = Saturation::None;
        if self.mode == ControlMode::Position {
            self.setpoint = self.present_position_rev();
            self.start_profile_from_present_motion();
        }
        self.enabled = true;
        Ok(())
    }

    /// Switches the power stage off; the motor coasts, slowed by friction and the load.
    /// The mode and setpoint are kept.
    pub fn disable(&mut self) {
        self.enabled = false;
    }

    /// Emergency stop: the power stage goes off at once (as [`SimDrive::disable`]), and the
    /// setpoint drops to the safe value of the mode, so that a later enable does not restart
    /// the motion by itself.
    pub fn estop(&mut self) {
        self.enabled = false;
        self.setpoint = self.safe_setpoint(self.mode);
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The latched fault, if any.
    pub fn fault(&self) -> Option<&SimFault> {
        self.fault.as_ref()
    }

    /// Clears the fault latch. The drive stays disabled. A cause still present (a winding
    /// still too hot) trips again at the next step.
    pub fn reset_faults(&mut self) {
        self.fault = None;
    }

    pub fn mode(&self) -> ControlMode {
        self.mode
    }

    /// Changes the commanded loop without a bump: the setpoint becomes the safe value of the
    /// new mode (0 A, 0 rpm, or the present position), and the loops taking over start from
    /// the present current reference and the present motion. Selecting the active mode
    /// changes nothing.
    pub fn set_mode(&mut self, mode: ControlMode) {
        if mode == self.mode {
            return;
        }
        self.mode = mode;
        self.setpoint = self.safe_setpoint(mode);
        // The speed loop takes over the torque being produced now…
        self.speed_pi.integral = limit(
            self.last_references.current_a,
            -self.config.drive.current_limit_a,
            self.config.drive.current_limit_a,
        );
        // …and a position move starts with the present speed and brakes from it.
        self.start_profile_from_present_motion();
    }

    /// The setpoint, in the unit of the active mode (A, rpm or rev).
    pub fn setpoint(&self) -> f64 {
        self.setpoint
    }

    /// Sets the setpoint in the unit of the active mode. The value is clamped to the drive's
    /// own limits (current limit, speed limit); non-finite values are ignored.
    pub fn set_setpoint(&mut self, value: f64) {
        if value.is_finite() {
            self.setpoint = self.clamp_setpoint(value);
        }
    }

    /// Runs the simulation forward by `dt_s` in fixed 50 µs steps, carrying any fraction of a
    /// step to the next call so that many small advances equal one large one exactly. Appends
    /// one frame per telemetry period of simulated time to `out`. A non-positive or
    /// non-finite `dt_s` does nothing. Apart from growing `out`, it does not allocate; the
    /// cost is proportional to `dt_s`.
    pub fn advance(&mut self, dt_s: f64, out: &mut Vec<TelemetryFrame>) {
        if !(dt_s.is_finite() && dt_s > 0.0) {
            return;
        }
        self.pending_s += dt_s;
        // The small epsilon absorbs the rounding of decimal durations (0.0137 s is 274 steps
        // but may compute as 273.99999999999997).
        let steps_due = (self.pending_s * STEP_RATE_HZ + 1e-6).floor().max(0.0);
        self.pending_s -= steps_due / STEP_RATE_HZ;
        let steps_due = steps_due as u64;
        // Reserve for the frames this call adds, but never more than a few MB at once, so an
        // absurd duration cannot abort on a capacity overflow; a longer run grows as usual.
        let frames_due = steps_due as f64 * self.config.telemetry_rate_hz / STEP_RATE_HZ;
        out.reserve((frames_due as usize).saturating_add(1).min(1 << 16));
        for _ in 0..steps_due {
            self.step(out);
        }
    }

    /// The parameter catalogue.
    pub fn param_specs() -> Vec<ParamSpec> {
        PARAMS.iter().map(|def| def.spec()).collect()
    }

    pub fn read_param(&self, key: &str) -> Result<f64, SimError> {
        let def = find_param(key).ok_or_else(|| LimitError::UnknownParam { key: key.to_owned() })?;
        Ok((def.get)(&self.config))
    }

    /// Writes a parameter, checked against its catalogue entry (range, finiteness,
    /// read-only). It takes effect at the next step.
    pub fn write_param(&mut self, key: &str, value: f64) -> Result<(), SimError> {
        let def = find_param(key).ok_or_else(|| LimitError::UnknownParam { key: key.to_owned() })?;
        def.spec().check(value)?;
        (def.set)(&mut self.config, value);
        if key == "telemetry_rate_hz" {
            self.restart_telemetry_schedule();
        }
        // A lowered limit applies to the setpoint already held.
        self.setpoint = self.clamp_setpoint(self.setpoint);
        Ok(())
    }

    /// The configuration, including every parameter written since.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// One 50 µs step: measure, protect, control, then advance the plant.
    fn step(&mut self, out: &mut Vec<TelemetryFrame>) {
        let measurement = self.measure();
        self.check_protections(&measurement);
        let (stage, references) = if self.enabled {
            self.control(&measurement)
        } else {
            (PowerStage::Off, self.idle_references(&measurement))
        };
        // Following error trips inside `control`; the power stage goes off in this very step.
        let stage = if self.enabled { stage } else { PowerStage::Off };
        if self.steps >= self.next_frame_step {
            out.push(self.frame(&measurement, &references));
            self.frame_index += 1;
            self.schedule_next_frame();
        }
        self.last_measurement = measurement;
        self.last_references = references;
        self.plant.step(&self.config.motor, supply(&self.config.drive), stage, STEP_S);
        self.steps += 1;
    }

    /// Samples the sensors. Draws exactly three normal variates per step, whatever the
    /// noise levels, so that the noise sequence depends on the seed and the step count only.
    fn measure(&mut self) -> Measurement {
        let drive = &self.config.drive;
        let speed_noise: f64 = self.rng.sample(StandardNormal);
        let current_noise: f64 = self.rng.sample(StandardNormal);
        let voltage_noise: f64 = self.rng.sample(StandardNormal);
        let counts_per_rev = f64::from(drive.encoder_counts_per_rev);
        Measurement {
            speed_rpm: self.plant.speed_rad_s * RPM_PER_RAD_S + drive.speed_noise_rpm * speed_noise,
            current_a: self.plant.current_a + drive.current_noise_a * current_noise,
            position_rev: encoder_position_rev(self.plant.position_rad, counts_per_rev),
            bus_voltage_v: self.plant.bus_voltage_v + drive.voltage_noise_v * voltage_noise,
        }
    }

    /// Over-current and over-temperature are watched whether or not the stage is on.
    fn check_protections(&mut self, measurement: &Measurement) {
        let drive = &self.config.drive;
        if measurement.current_a.abs() > drive.overcurrent_trip_a {
            let fault =
                SimFault::OverCurrent { current_a: measurement.current_a, trip_a: drive.overcurrent_trip_a };
            self.trip(fault);
        } else if self.plant.temperature_c > drive.overtemp_trip_c {
            let fault = SimFault::OverTemperature {
                temperature_c: self.plant.temperature_c,
                trip_c: drive.overtemp_trip_c,
            };
            self.trip(fault);
        }
    }

    /// Latches the first fault and stops like an e-stop.
    fn trip(&mut self, fault: SimFault) {
        if self.fault.is_none() {
            self.fault = Some(fault);
        }
        if self.enabled {
            self.estop();
        }
    }

    /// The cascade: position → speed → current → voltage.
    fn control(&mut self, measurement: &Measurement) -> (PowerStage, References) {
        let drive = &self.config.drive;
        let motor = &self.config.motor;
        let current_limit_a = drive.current_limit_a;
        let speed_limit_rpm = drive.speed_limit_rpm;

        let (position_ref_rev, speed_ref_rpm) = match self.mode {
            ControlMode::Position => {
                let max_speed_rev_s = self.profile_speed_rev_s();
                let accel_rev_s2 = drive.profile_accel_rpm_per_s / 60.0;
                self.profile.update(self.setpoint, max_speed_rev_s, accel_rev_s2, STEP_S);
                let error_rev = self.profile.position_rev - measurement.position_rev;
                if error_rev.abs() > drive.following_error_rev {
                    let limit_rev = drive.following_error_rev;
                    self.trip(SimFault::FollowingError { error_rev, limit_rev });
                    return (PowerStage::Off, self.idle_references(measurement));
                }
                let speed_rpm = self.profile.velocity_rev_s * 60.0 + drive.position_kp * error_rev;
                (self.profile.position_rev, limit(speed_rpm, -speed_limit_rpm, speed_limit_rpm))
            }
            ControlMode::Speed => {
                (measurement.position_rev, limit(self.setpoint, -speed_limit_rpm, speed_limit_rpm))
            }
            ControlMode::Current => (measurement.position_rev, measurement.speed_rpm),
        };

        let current_ref_a = match self.mode {
            ControlMode::Current => {
                // Torque mode still honours the speed limit, or an unloaded motor would run
                // up to its no-load speed. The current available tapers from the full limit
                // to zero over the last 5 % below the speed limit and turns into braking
                // beyond it. Its own fixed slope keeps it independent of the speed tuning.
                let taper_a_per_rpm = current_limit_a / (OVERSPEED_TAPER * speed_limit_rpm);
                let upper_a = taper_a_per_rpm * (speed_limit_rpm - measurement.speed_rpm);
                let lower_a = taper_a_per_rpm * (-speed_limit_rpm - measurement.speed_rpm);
                limit(limit(self.setpoint, lower_a, upper_a), -current_limit_a, current_limit_a)
            }
            ControlMode::Speed | ControlMode::Position => {
                let speed_out = self.speed_pi.update(
                    PiGains { kp: drive.speed_kp, ki: drive.speed_ki },
                    speed_ref_rpm - measurement.speed_rpm,
                    0.0,
                    current_limit_a,
                    self.current_loop_saturation,
                    STEP_S,
                );
                speed_out.value
            }
        };

        // Back-EMF feed-forward: the integrator then only has to supply the resistive drop,
        // so the current loop holds its bandwidth at any speed.
        let back_emf_v = motor.torque_constant_nm_per_a * measurement.speed_rpm / RPM_PER_RAD_S;
        let bus_v = measurement.bus_voltage_v.max(1.0);
        let voltage_out = self.current_pi.update(
            PiGains { kp: drive.current_kp, ki: drive.current_ki },
            current_ref_a - measurement.current_a,
            back_emf_v,
            MAX_DUTY * bus_v,
            Saturation::None,
            STEP_S,
        );
        self.current_loop_saturation = voltage_out.saturation;
        // The modulator divides by the measured bus; the winding then sees the true bus times
        // the duty, so bus measurement error shows up as a gain error, as on real hardware.
        let duty = limit(voltage_out.value / bus_v, -MAX_DUTY, MAX_DUTY);
        let references =
            References { speed_rpm: speed_ref_rpm, current_a: current_ref_a, position_rev: position_ref_rev };
        (PowerStage::Modulating { duty }, references)
    }

    /// References reported while the power stage is off. In position mode the profile
    /// follows the measured position so that a later enable or mode change starts from it.
    fn idle_references(&mut self, measurement: &Measurement) -> References {
        let speed_rpm = match self.mode {
            ControlMode::Speed => self.setpoint,
            ControlMode::Current | ControlMode::Position => measurement.speed_rpm,
        };
        if self.mode == ControlMode::Position {
            self.profile = MotionProfile::starting_at(measurement.position_rev, 0.0);
        }
        References { speed_rpm, current_a: 0.0, position_rev: measurement.position_rev }
    }

    fn frame(&self, measurement: &Measurement, references: &References) -> TelemetryFrame {
        TelemetryFrame {
            t_s: self.time_s(),
            speed_rpm: measurement.speed_rpm,
            current_a: measurement.current_a,
            position_rev: measurement.position_rev,
            voltage_v: measurement.bus_voltage_v,
            temperature_c: self.plant.temperature_c,
            speed_setpoint_rpm: references.speed_rpm,
            current_setpoint_a: references.current_a,
            position_setpoint_rev: references.position_rev,
        }
    }

    fn restart_telemetry_schedule(&mut self) {
        self.frame_anchor_step = self.steps;
        self.frame_index = 0;
        self.schedule_next_frame();
    }

    fn schedule_next_frame(&mut self) {
        let steps_per_frame = STEP_RATE_HZ / self.config.telemetry_rate_hz;
        // The epsilon keeps exact multiples (20.0 × n) from rounding up to the next step.
        let offset = (self.frame_index as f64 * steps_per_frame - 1e-9).ceil().max(0.0);
        self.next_frame_step = self.frame_anchor_step + offset as u64;
    }

    /// Restarts the move profile at the present position and measured speed (within the
    /// profile speed), so the position reference continues the present motion.
    fn start_profile_from_present_motion(&mut self) {
        let max_speed_rev_s = self.profile_speed_rev_s();
        let speed_rev_s = limit(self.last_measurement.speed_rpm / 60.0, -max_speed_rev_s, max_speed_rev_s);
        self.profile = MotionProfile::starting_at(self.present_position_rev(), speed_rev_s);
    }

    /// Present position as the encoder reads it.
    fn present_position_rev(&self) -> f64 {
        encoder_position_rev(self.plant.position_rad, f64::from(self.config.drive.encoder_counts_per_rev))
    }

    fn profile_speed_rev_s(&self) -> f64 {
        self.config.drive.profile_speed_rpm.min(self.config.drive.speed_limit_rpm) / 60.0
    }

    fn safe_setpoint(&self, mode: ControlMode) -> f64 {
        match mode {
            ControlMode::Current | ControlMode::Speed => 0.0,
            ControlMode::Position => self.present_position_rev(),
        }
    }

    fn clamp_setpoint(&self, value: f64) -> f64 {
        let drive = &self.config.drive;
        match self.mode {
            ControlMode::Current => limit(value, -drive.current_limit_a, drive.current_limit_a),
            ControlMode::Speed => limit(value, -drive.speed_limit_rpm, drive.speed_limit_rpm),
            ControlMode::Position => value,
        }
    }
}

fn supply(drive: &DriveParams) -> Supply {
    Supply { voltage_v: drive.bus_voltage_v, resistance_ohm: drive.supply_resistance_ohm }
}

/// A shaft angle as an incremental encoder with `counts_per_rev` counts reads it.
fn encoder_position_rev(position_rad: f64, counts_per_rev: f64) -> f64 {
    (position_rad / std::f64::consts::TAU * counts_per_rev).floor() / counts_per_rev
}
