//! The plant: supply and DC bus, power stage, winding, shaft and winding temperature.

use super::params::MotorParams;

/// What the power stage does during one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum PowerStage {
    /// Switching, applying `duty` × bus voltage to the winding (duty in −1…1).
    Modulating { duty: f64 },
    /// All switches off. Winding current can only flow through the freewheeling diodes,
    /// which clamp the terminal voltage to ±bus.
    Off,
}

/// Supply feeding the DC bus: an ideal source behind a resistance. Regenerated power flows
/// back into it, as it would into a battery; there is no brake chopper to model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Supply {
    pub voltage_v: f64,
    pub resistance_ohm: f64,
}

/// True physical state. The drive never reads it directly, only through measurements.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plant {
    /// Torque-producing winding current.
    pub current_a: f64,
    pub speed_rad_s: f64,
    /// Multi-turn shaft angle.
    pub position_rad: f64,
    pub temperature_c: f64,
    /// Bus voltage during the last step.
    pub bus_voltage_v: f64,
}

impl Plant {
    /// At rest, at ambient temperature, bus at the open-circuit supply voltage.
    pub fn at_rest(motor: &MotorParams, supply: Supply) -> Self {
        Plant {
            current_a: 0.0,
            speed_rad_s: 0.0,
            position_rad: 0.0,
            temperature_c: motor.ambient_temperature_c,
            bus_voltage_v: supply.voltage_v,
        }
    }

    /// Advances the plant by `dt_s` with the power stage held in one state.
    pub fn step(&mut self, motor: &MotorParams, supply: Supply, stage: PowerStage, dt_s: f64) {
        let resistance_ohm = motor.resistance_at_ohm(self.temperature_c);
        let back_emf_v = motor.torque_constant_nm_per_a * self.speed_rad_s;
        let current_start_a = self.current_a;

        // With the stage off, the diodes conduct in the direction of a flowing current and
        // connect the winding to the bus against it, so the current collapses into the bus.
        // With no current they only conduct once the back-EMF exceeds the bus (uncontrolled
        // rectification: braking); below that the terminals float at the back-EMF.
        let terminal_v = match stage {
            PowerStage::Modulating { duty } => {
                self.bus_voltage_v = bus_voltage_v(supply, duty, current_start_a);
                duty * self.bus_voltage_v
            }
            PowerStage::Off => {
                let conducting = if current_start_a != 0.0 {
                    -current_start_a.signum()
                } else if back_emf_v.abs() > self.bus_voltage_v {
                    back_emf_v.signum()
                } else {
                    0.0
                };
                self.bus_voltage_v = bus_voltage_v(supply, conducting, current_start_a);
                if conducting == 0.0 { back_emf_v } else { conducting * self.bus_voltage_v }
            }
        };
        // Exact solution of L·di/dt = v − e − R·i for v and e constant over the step:
        // i₁ = i₀ + (v − e − R·i₀)·(1 − e^(−R·dt/L))/R. Written with expm1 and divided out so
        // that it stays accurate, and finite, as R → 0. Unconditionally stable for any L, R.
        let decay = resistance_ohm * dt_s / motor.inductance_h;
        let gain_a_per_v =
            if decay > 1e-12 { -(-decay).exp_m1() / resistance_ohm } else { dt_s / motor.inductance_h };
        let mut current_end_a =
            current_start_a + (terminal_v - back_emf_v - resistance_ohm * current_start_a) * gain_a_per_v;
        if stage == PowerStage::Off && current_start_a * current_end_a < 0.0 {
            // The diodes stop conducting when their current reaches zero.
            current_end_a = 0.0;
        }
        self.current_a = current_end_a;
        // Trapezoidal mean over the step; the exact mean differs by O(dt²).
        let current_mean_a = 0.5 * (current_start_a + current_end_a);

        self.step_mechanics(motor, current_mean_a, dt_s);

        // Copper loss heats the winding, the thermal resistance cools it. The thermal time
        // constant (a minute by default, never below 0.1 ms in the catalogue ranges) is long
        // against the 50 µs step, so explicit Euler is accurate to dt/(2τ): under 1e-6 by
        // default.
        let loss_w = resistance_ohm * 0.5 * (current_start_a.powi(2) + current_end_a.powi(2));
        let cooling_w = (self.temperature_c - motor.ambient_temperature_c) / motor.thermal_resistance_k_per_w;
        self.temperature_c += (loss_w - cooling_w) * dt_s / motor.thermal_capacitance_j_per_k;
    }

    /// Shaft dynamics J·dω/dt = Kt·i − load − B·ω − Tc·sign(ω) with stiction: a shaft at
    /// rest stays at rest while the applied torque is within the Coulomb level, and a shaft
    /// whose speed would cross zero within a step stops there. That is what keeps the model
    /// from chattering around zero speed.
    fn step_mechanics(&mut self, motor: &MotorParams, current_mean_a: f64, dt_s: f64) {
        let applied_nm = motor.torque_constant_nm_per_a * current_mean_a - motor.load_torque_nm;
        let speed_start = self.speed_rad_s;
        // Viscous friction is integrated implicitly (the divisor below), which is stable for
        // any ratio of B to J.
        let implicit_divisor = motor.inertia_kgm2 + motor.viscous_friction_nm_s_per_rad * dt_s;
        let speed_end = if speed_start == 0.0 {
            if applied_nm.abs() <= motor.coulomb_friction_nm {
                0.0
            } else {
                let net_nm = applied_nm - motor.coulomb_friction_nm * applied_nm.signum();
                net_nm * dt_s / implicit_divisor
            }
        } else {
            let direction = speed_start.signum();
            let net_nm = applied_nm - motor.coulomb_friction_nm * direction;
            let next = (motor.inertia_kgm2 * speed_start + net_nm * dt_s) / implicit_divisor;
            // Friction cannot reverse the motion: it stops it, and the next step decides from
            // rest whether the applied torque breaks it away in the other direction.
            if next * direction < 0.0 { 0.0 } else { next }
        };
        self.speed_rad_s = speed_end;
        self.position_rad += 0.5 * (speed_start + speed_end) * dt_s;
    }
}

/// Bus voltage with the bridge at `duty` carrying `winding_current_a`. The DC-link current is
/// duty × winding current (power balance of a lossless bridge). It is taken at the start of
/// the step so that bus and winding need no simultaneous solution; the sag is small, so the
/// one-step lag is invisible.
fn bus_voltage_v(supply: Supply, duty: f64, winding_current_a: f64) -> f64 {
    supply.voltage_v - supply.resistance_ohm * duty * winding_current_a
}

#[cfg(test)]
mod tests {
    use super::super::params::RESISTANCE_REFERENCE_C;
    use super::*;

    fn supply() -> Supply {
        Supply { voltage_v: 24.0, resistance_ohm: 0.0 }
    }

    /// A locked rotor under a constant voltage follows i(t) = V/R·(1 − e^(−t·R/L)) exactly,
    /// even with a step far longer than L/R.
    #[test]
    fn winding_current_matches_analytic_rl_response() {
        let motor =
            MotorParams { inertia_kgm2: 1.0e9, resistance_temp_coeff_per_k: 0.0, ..MotorParams::default() };
        for dt_s in [50e-6, 1e-3] {
            let mut plant = Plant::at_rest(&motor, supply());
            let duty = 0.25;
            let steps = 40;
            for _ in 0..steps {
                plant.step(&motor, supply(), PowerStage::Modulating { duty }, dt_s);
            }
            let t_s = steps as f64 * dt_s;
            let tau_s = motor.inductance_h / motor.resistance_ohm;
            let expected_a = duty * 24.0 / motor.resistance_ohm * (1.0 - (-t_s / tau_s).exp());
            assert!(
                (plant.current_a - expected_a).abs() < 1e-3 * expected_a,
                "dt {dt_s}: {} A vs {expected_a} A",
                plant.current_a
            );
        }
    }

    #[test]
    fn freewheel_current_decays_to_zero_without_reversing() {
        let motor = MotorParams::default();
        let mut plant = Plant::at_rest(&motor, supply());
        plant.current_a = 8.0;
        for _ in 0..20 {
            plant.step(&motor, supply(), PowerStage::Off, 50e-6);
            assert!(plant.current_a >= 0.0, "diode current reversed: {}", plant.current_a);
        }
        assert_eq!(plant.current_a, 0.0);
    }

    #[test]
    fn back_emf_above_bus_brakes_through_the_diodes() {
        let motor = MotorParams::default();
        let mut plant = Plant::at_rest(&motor, supply());
        // 30 V of back-EMF against a 24 V bus.
        plant.speed_rad_s = 30.0 / motor.torque_constant_nm_per_a;
        for _ in 0..200 {
            plant.step(&motor, supply(), PowerStage::Off, 50e-6);
        }
        assert!(plant.current_a < -1.0, "expected braking current, got {}", plant.current_a);
        assert!(plant.speed_rad_s < 30.0 / motor.torque_constant_nm_per_a);
    }

    #[test]
    fn resistance_rises_with_temperature_like_copper() {
        let motor = MotorParams::default();
        let ratio = motor.resistance_at_ohm(RESISTANCE_REFERENCE_C + 100.0) / motor.resistance_ohm;
        assert!((ratio - 1.39).abs() < 1e-9, "{ratio}");
    }
}
