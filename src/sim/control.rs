//! Controller building blocks: a PI with anti-windup and the position-move profile.

/// Clamps without the panics of `f64::clamp` (which rejects `lo > hi` and NaN bounds);
/// when `lo > hi` the upper bound wins.
pub(super) fn limit(value: f64, lo: f64, hi: f64) -> f64 {
    value.max(lo).min(hi)
}

/// Which way an output is pinned against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Saturation {
    #[default]
    None,
    High,
    Low,
}

impl Saturation {
    /// Whether integrating `error` would push further into this saturation.
    fn pushed_further_by(self, error: f64) -> bool {
        match self {
            Saturation::None => false,
            Saturation::High => error > 0.0,
            Saturation::Low => error < 0.0,
        }
    }
}

/// PI controller with feed-forward, a symmetric output limit and anti-windup by conditional
/// integration.
///
/// The integrator holds its contribution in output units (it accumulates Ki·e·dt rather
/// than e·dt), so a change of Ki while running changes the future response but never
/// bumps the present output.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct PiController {
    pub integral: f64,
}

/// Gains of a PI controller, in output units per error unit (and per second for `ki`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PiGains {
    pub kp: f64,
    pub ki: f64,
}

/// Result of one PI update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PiOutput {
    pub value: f64,
    pub saturation: Saturation,
}

impl PiController {
    /// One update.
    ///
    /// Integration stops while the output is limited and the error would push it further,
    /// and also while `downstream` (the inner loop this output feeds) is saturated the same
    /// way: a current reference the bus voltage cannot deliver must not wind the speed
    /// integrator up. The integrator is also kept within the output range on its own, so
    /// it can never hold the output at a limit after the error has reversed.
    pub fn update(
        &mut self,
        gains: PiGains,
        error: f64,
        feedforward: f64,
        output_limit: f64,
        downstream: Saturation,
        dt_s: f64,
    ) -> PiOutput {
        let unlimited = feedforward + gains.kp * error + self.integral;
        let (value, saturation) = if unlimited > output_limit {
            (output_limit, Saturation::High)
        } else if unlimited < -output_limit {
            (-output_limit, Saturation::Low)
        } else {
            (unlimited, Saturation::None)
        };
        if !saturation.pushed_further_by(error) && !downstream.pushed_further_by(error) {
            self.integral += gains.ki * error * dt_s;
        }
        self.integral = limit(self.integral, -output_limit - feedforward, output_limit - feedforward);
        PiOutput { value, saturation }
    }
}

/// Time-optimal trapezoidal move generator: the reference position and velocity that the
/// position loop tracks. It limits speed and acceleration, brakes so as to stop exactly on
/// the target, and copes with a target that changes mid-move or a start at non-zero speed
/// (it brakes, reverses and comes back).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct MotionProfile {
    pub position_rev: f64,
    pub velocity_rev_s: f64,
}

impl MotionProfile {
    pub fn starting_at(position_rev: f64, velocity_rev_s: f64) -> Self {
        MotionProfile { position_rev, velocity_rev_s }
    }

    /// Advances the reference by one step towards `target_rev`. Requires positive limits.
    pub fn update(&mut self, target_rev: f64, max_speed_rev_s: f64, accel_rev_s2: f64, dt_s: f64) {
        let distance_rev = target_rev - self.position_rev;
        let speed_step = accel_rev_s2 * dt_s;
        let wanted_speed = stopping_speed(distance_rev.abs(), speed_step, dt_s).min(max_speed_rev_s);
        let wanted_velocity = wanted_speed.copysign(distance_rev);
        self.velocity_rev_s += limit(wanted_velocity - self.velocity_rev_s, -speed_step, speed_step);
        self.position_rev += self.velocity_rev_s * dt_s;
        let remaining_rev = target_rev - self.position_rev;
        if remaining_rev.abs() <= 1e-12 * (1.0 + target_rev.abs()) && self.velocity_rev_s.abs() <= speed_step
        {
            // Arrived: remove the rounding residue so the reference rests exactly on the
            // target. The velocity of this last step (at most one speed step) goes to zero
            // at the next update, within the acceleration limit.
            self.position_rev = target_rev;
        }
    }
}

/// The highest speed to move at during this step such that braking by at most
/// `speed_step` per step afterwards still stops exactly at `distance` (≥ 0) ahead.
///
/// The continuous-time answer √(2·a·d) overshoots in discrete time. Moving at v this step
/// and then at v − u, v − 2u, … (u = a·dt) while positive covers
/// S(v) = dt·(m + 1)·(v − u·m/2) with m = ⌈v/u⌉ − 1; S rises monotonically with v, so the
/// answer solves S(v) = d on the segment m·u < v ≤ (m + 1)·u that contains it. On that
/// curve the speed falls by exactly u per step and the last step lands on the target.
fn stopping_speed(distance: f64, speed_step: f64, dt_s: f64) -> f64 {
    if distance <= 0.0 {
        return 0.0;
    }
    // The continuous-time solution of v²/(2a) + v·dt/2 = d lands on or next to the right
    // segment.
    let estimate =
        0.5 * (-speed_step + (speed_step * speed_step + 8.0 * speed_step * distance / dt_s).sqrt());
    let mut segment = ((estimate / speed_step).ceil() - 1.0).max(0.0);
    let mut speed = 0.0;
    for _ in 0..4 {
        speed = distance / (dt_s * (segment + 1.0)) + 0.5 * speed_step * segment;
        if speed > (segment + 1.0) * speed_step {
            segment += 1.0;
        } else if speed <= segment * speed_step && segment > 0.0 {
            segment -= 1.0;
        } else {
            break;
        }
    }
    speed
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn integrator_freezes_while_output_saturates() {
        let mut pi = PiController::default();
        for _ in 0..10_000 {
            let out = pi.update(PiGains { kp: 1.0, ki: 100.0 }, 50.0, 0.0, 10.0, Saturation::None, 1e-3);
            assert_eq!(out.value, 10.0);
            assert_eq!(out.saturation, Saturation::High);
        }
        // The proportional term alone saturates, so the integrator never started.
        assert_eq!(pi.integral, 0.0);
        let out = pi.update(PiGains { kp: 1.0, ki: 100.0 }, -1.0, 0.0, 10.0, Saturation::None, 1e-3);
        assert!(out.value < 0.0, "output must follow the reversed error at once: {}", out.value);
    }

    #[test]
    fn integrator_freezes_while_downstream_saturates() {
        let mut pi = PiController::default();
        for _ in 0..1000 {
            pi.update(PiGains { kp: 0.0, ki: 100.0 }, 1.0, 0.0, 10.0, Saturation::High, 1e-3);
        }
        assert_eq!(pi.integral, 0.0);
        // An error that pulls out of the downstream saturation still integrates.
        pi.update(PiGains { kp: 0.0, ki: 100.0 }, -1.0, 0.0, 10.0, Saturation::High, 1e-3);
        assert!(pi.integral < 0.0);
    }

    #[test]
    fn integrator_alone_stays_inside_the_output_range() {
        let mut pi = PiController::default();
        // Small error, large Ki: the output saturates only through the integrator.
        for _ in 0..10_000 {
            pi.update(PiGains { kp: 0.0, ki: 1e4 }, 0.1, 2.0, 10.0, Saturation::None, 1e-3);
        }
        assert!(pi.integral <= 10.0 - 2.0 + 1e-12, "{}", pi.integral);
    }

    fn run_profile(
        start_rev: f64,
        start_velocity: f64,
        target_rev: f64,
        vmax: f64,
        accel: f64,
    ) -> (MotionProfile, f64, f64) {
        let dt_s = 50e-6;
        let mut profile = MotionProfile::starting_at(start_rev, start_velocity);
        let mut peak_speed: f64 = 0.0;
        let mut peak_accel: f64 = 0.0;
        // Long enough for the slowest case: brake from the start speed, come back, travel the
        // distance at the top speed, with the ramps in between (40 rev at 1 rev/s is 40 s).
        let braking_rev = start_velocity * start_velocity / (2.0 * accel);
        let horizon_s = ((target_rev - start_rev).abs() + 2.0 * braking_rev) / vmax
            + 2.0 * (start_velocity.abs() + vmax) / accel
            + 1.0;
        let steps = (horizon_s / dt_s).ceil() as u64;
        for _ in 0..steps {
            let before = profile.velocity_rev_s;
            profile.update(target_rev, vmax, accel, dt_s);
            peak_speed = peak_speed.max(profile.velocity_rev_s.abs());
            peak_accel = peak_accel.max(((profile.velocity_rev_s - before) / dt_s).abs());
            if profile.position_rev == target_rev && profile.velocity_rev_s == 0.0 {
                break;
            }
        }
        (profile, peak_speed, peak_accel)
    }

    #[test]
    fn stopping_speed_lands_on_the_target() {
        let (u, dt_s) = (0.0166, 50e-6);
        for distance in [1e-9, 3e-7, 8.3e-7, 1.448e-6, 1e-3, 0.7, 12.0] {
            // Follow the braking sequence and add up the distance it covers.
            let mut speed = stopping_speed(distance, u, dt_s);
            let mut covered = 0.0;
            while speed > 0.0 {
                covered += speed * dt_s;
                speed -= u;
            }
            assert!((covered - distance).abs() <= 1e-9 * distance, "{distance}: covered {covered}");
        }
        assert_eq!(stopping_speed(0.0, u, dt_s), 0.0);
    }

    #[test]
    fn profile_stops_exactly_on_target_without_overshoot() {
        let dt_s = 50e-6;
        let (vmax, accel) = (50.0, 333.0);
        let mut profile = MotionProfile::default();
        let mut furthest: f64 = 0.0;
        for _ in 0..100_000 {
            profile.update(5.0, vmax, accel, dt_s);
            furthest = furthest.max(profile.position_rev);
        }
        assert_eq!(profile.position_rev, 5.0);
        assert_eq!(profile.velocity_rev_s, 0.0);
        assert!(furthest <= 5.0, "overshoot to {furthest}");
    }

    #[test]
    fn long_slow_move_arrives() {
        // 29.5 rev at 1 rev/s: longer than a fixed 20 s horizon would allow.
        let (profile, _, _) = run_profile(-10.396800795646922, 0.0, 19.06389777668923, 1.0, 50.0);
        assert_eq!(profile.position_rev, 19.06389777668923);
        assert_eq!(profile.velocity_rev_s, 0.0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn profile_respects_limits_and_arrives(
            start in -20.0..20.0f64,
            start_velocity in -30.0..30.0f64,
            target in -20.0..20.0f64,
            vmax in 1.0..60.0f64,
            accel in 50.0..2000.0f64,
        ) {
            let (profile, peak_speed, peak_accel) = run_profile(start, start_velocity, target, vmax, accel);
            prop_assert_eq!(profile.position_rev, target);
            prop_assert_eq!(profile.velocity_rev_s, 0.0);
            prop_assert!(peak_accel <= accel * (1.0 + 1e-9), "accel {} > {}", peak_accel, accel);
            prop_assert!(peak_speed <= vmax.max(start_velocity.abs()) * (1.0 + 1e-9));
        }
    }
}
