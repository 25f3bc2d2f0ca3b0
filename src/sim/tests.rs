//! Behavioural tests of the simulated drive: control performance, limits, protections,
//! timing, determinism and the parameter catalogue.

use proptest::prelude::*;

use super::*;

/// Runs `dt_s` of simulated time and returns the frames.
fn run(drive: &mut SimDrive, dt_s: f64) -> Vec<TelemetryFrame> {
    let mut frames = Vec::new();
    drive.advance(dt_s, &mut frames);
    frames
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(sum, count), v| (sum + v, count + 1));
    assert!(count > 0, "mean of no values");
    sum / count as f64
}

/// Mean of a signal over the last `window_s` of the frames.
fn tail_mean(frames: &[TelemetryFrame], window_s: f64, signal: impl Fn(&TelemetryFrame) -> f64) -> f64 {
    let end_s = frames.last().map_or(0.0, |f| f.t_s);
    mean(frames.iter().filter(|f| f.t_s > end_s - window_s).map(signal))
}

fn enabled_drive(config: &SimConfig, mode: ControlMode) -> SimDrive {
    let mut drive = SimDrive::new(config);
    drive.set_mode(mode);
    drive.enable().expect("a fresh drive has no fault");
    drive
}

/// Step-response figures of a speed step from rest.
struct StepResponse {
    rise_10_90_s: f64,
    overshoot_pct: f64,
    /// Time after the step of the last frame outside ±2 %.
    settling_s: f64,
    final_mean_rpm: f64,
}

fn speed_step(config: &SimConfig, target_rpm: f64) -> StepResponse {
    let mut drive = enabled_drive(config, ControlMode::Speed);
    run(&mut drive, 0.05);
    let t0_s = drive.time_s();
    drive.set_setpoint(target_rpm);
    let frames = run(&mut drive, 1.0);
    let first_at = |level: f64| {
        frames.iter().find(|f| f.speed_rpm >= level * target_rpm).map_or(f64::INFINITY, |f| f.t_s - t0_s)
    };
    let peak_rpm = frames.iter().map(|f| f.speed_rpm).fold(f64::MIN, f64::max);
    let last_outside_s = frames
        .iter()
        .rev()
        .find(|f| (f.speed_rpm - target_rpm).abs() > 0.02 * target_rpm)
        .map_or(0.0, |f| f.t_s - t0_s);
    StepResponse {
        rise_10_90_s: first_at(0.9) - first_at(0.1),
        overshoot_pct: (peak_rpm - target_rpm) / target_rpm * 100.0,
        settling_s: last_outside_s,
        final_mean_rpm: tail_mean(&frames, 0.1, |f| f.speed_rpm),
    }
}

#[test]
fn speed_step_to_1000_rpm_settles_fast_with_small_overshoot() {
    let response = speed_step(&SimConfig::default(), 1000.0);
    assert!((response.final_mean_rpm - 1000.0).abs() < 20.0, "final mean {}", response.final_mean_rpm);
    assert!(response.overshoot_pct < 10.0, "overshoot {} %", response.overshoot_pct);
    assert!(response.settling_s < 0.25, "settling {} s", response.settling_s);
    assert!(response.rise_10_90_s < 0.1, "rise {} s", response.rise_10_90_s);
}

#[test]
fn alternative_bench_is_different_and_well_tuned() {
    let alternative = SimConfig::alternative();
    let default = SimConfig::default();
    assert!(alternative.drive.bus_voltage_v > 1.5 * default.drive.bus_voltage_v);
    assert!(alternative.motor.inertia_kgm2 > 4.0 * default.motor.inertia_kgm2);
    let response = speed_step(&alternative, 1000.0);
    assert!((response.final_mean_rpm - 1000.0).abs() < 20.0, "final mean {}", response.final_mean_rpm);
    assert!(response.overshoot_pct < 10.0, "overshoot {} %", response.overshoot_pct);
    assert!(response.settling_s < 0.5, "settling {} s", response.settling_s);
}

#[test]
fn speed_noise_does_not_excite_the_loop() {
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Speed);
    drive.set_setpoint(1000.0);
    run(&mut drive, 0.5);
    let frames = run(&mut drive, 0.5);
    let true_speed_rpm = drive.plant.speed_rad_s * RPM_PER_RAD_S;
    assert!((true_speed_rpm - 1000.0).abs() < 3.0, "true speed {true_speed_rpm}");
    // Measured-speed noise is σ = 2 rpm; a loop that amplified it would show a larger spread.
    let spread = frames.iter().map(|f| (f.speed_rpm - 1000.0).abs()).fold(0.0, f64::max);
    assert!(spread < 12.0, "speed deviates by {spread} rpm");
}

#[test]
fn current_never_exceeds_the_limit() {
    let limit_a = SimConfig::default().drive.current_limit_a;
    let allowance_a = limit_a + 0.2;

    // Current mode, setpoint far above the limit, free shaft: runs up to the speed limit.
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Current);
    drive.set_setpoint(30.0);
    assert_eq!(drive.setpoint(), limit_a, "the setpoint is clamped to the drive's limit");
    let frames = run(&mut drive, 1.5);
    let peak_a = frames.iter().map(|f| f.current_a.abs()).fold(0.0, f64::max);
    assert!(peak_a > limit_a - 0.2, "the limit should be reached: {peak_a}");
    assert!(peak_a < allowance_a, "current mode peak {peak_a} A");
    assert!(frames.iter().all(|f| f.current_setpoint_a.abs() <= limit_a));
    let top_rpm = tail_mean(&frames, 0.1, |f| f.speed_rpm);
    assert!((top_rpm - 4000.0).abs() < 50.0, "current mode must stop at the speed limit: {top_rpm}");

    // Speed mode, step to high speed against a load close to the peak torque, then back.
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Speed);
    drive.write_param("load_torque_nm", 0.3).expect("in range");
    drive.set_setpoint(3000.0);
    let mut frames = run(&mut drive, 1.0);
    drive.set_setpoint(-3000.0);
    frames.extend(run(&mut drive, 1.0));
    let peak_a = frames.iter().map(|f| f.current_a.abs()).fold(0.0, f64::max);
    assert!(peak_a < allowance_a, "speed mode peak {peak_a} A");
    assert!(drive.fault().is_none());

    // A written limit applies at once.
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Speed);
    drive.write_param("current_limit_a", 3.0).expect("in range");
    drive.set_setpoint(3000.0);
    let frames = run(&mut drive, 0.5);
    let peak_a = frames.iter().map(|f| f.current_a.abs()).fold(0.0, f64::max);
    assert!(peak_a < 3.2 && peak_a > 2.8, "peak with a 3 A limit: {peak_a} A");
}

/// Checks the latch contract once `drive` has tripped with `expected` and the cause is gone.
fn assert_latches(drive: &mut SimDrive, is_expected: fn(&SimFault) -> bool) {
    let fault = drive.fault().cloned().expect("a fault is latched");
    assert!(is_expected(&fault), "unexpected fault {fault}");
    assert!(!drive.is_enabled(), "a fault switches the power stage off");
    let frames = run(drive, 0.2);
    assert!(frames.iter().all(|f| f.current_setpoint_a == 0.0));
    assert_eq!(drive.fault(), Some(&fault), "the fault stays latched after the cause is gone");
    assert_eq!(drive.enable(), Err(SimError::Faulted(fault)));
    assert!(!drive.is_enabled());
    drive.reset_faults();
    assert!(drive.fault().is_none());
    assert!(!drive.is_enabled(), "reset does not enable");
    run(drive, 0.05);
    assert!(drive.fault().is_none(), "the cause is gone, so it does not trip again");
    assert_eq!(drive.enable(), Ok(()));
}

#[test]
fn over_current_trips_and_latches() {
    // A current limit set above the trip: the first hard acceleration trips.
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Speed);
    drive.write_param("current_limit_a", 30.0).expect("in range");
    drive.set_setpoint(3000.0);
    let frames = run(&mut drive, 0.05);
    let fault = drive.fault().cloned().expect("30 A against a 20 A trip must trip");
    assert!(fault.to_string().contains("over-current") && fault.to_string().contains("20 A"), "{fault}");
    let peak_a = frames.iter().map(|f| f.current_a.abs()).fold(0.0, f64::max);
    assert!(peak_a < 21.0, "the trip acts within a step of the threshold: {peak_a} A");
    drive.write_param("current_limit_a", 8.0).expect("in range");
    assert_latches(&mut drive, |f| matches!(f, SimFault::OverCurrent { trip_a: 20.0, .. }));

    // A trip threshold below the acceleration current.
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Speed);
    drive.write_param("overcurrent_trip_a", 2.0).expect("in range");
    drive.set_setpoint(1000.0);
    run(&mut drive, 0.05);
    drive.write_param("overcurrent_trip_a", 20.0).expect("in range");
    assert_latches(&mut drive, |f| matches!(f, SimFault::OverCurrent { trip_a: 2.0, .. }));
}

#[test]
fn an_unstable_current_loop_is_bounded_by_the_voltage_limit() {
    // Far above 2·L/Ts the sampled current loop is unstable. The voltage limit turns the
    // divergence into a limit cycle at half the step rate whose size is about
    // 0.95·Vbus·Ts/(2·L): a whine at 10 kHz, not a runaway current.
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Current);
    drive.write_param("current_kp", 40.0).expect("in range");
    drive.set_setpoint(1.0);
    // Telemetry cannot show a 10 kHz cycle (it samples at most every other step), so
    // watch the winding current step by step.
    let mut frames = Vec::new();
    let mut currents_a = Vec::new();
    for _ in 0..1000 {
        drive.advance(STEP_S, &mut frames);
        currents_a.push(drive.plant.current_a);
    }
    let swing_a = currents_a[500..].windows(2).map(|pair| (pair[1] - pair[0]).abs()).fold(0.0, f64::max);
    let bound_a = 0.95 * 24.0 * STEP_S / 0.3e-3;
    assert!(swing_a > 0.5 * bound_a, "the loop should ring: swing {swing_a} A");
    assert!(swing_a < 1.3 * bound_a, "swing {swing_a} A exceeds the voltage-limited {bound_a} A");
    assert!(drive.fault().is_none(), "the ringing stays far below the over-current trip");
}

#[test]
fn over_temperature_trips_and_latches() {
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Current);
    // Stall: the load matches the motor torque at 8 A, so the shaft stays put.
    drive.write_param("load_torque_nm", 0.045 * 8.0).expect("in range");
    drive.write_param("overtemp_trip_c", 30.0).expect("in range");
    drive.set_setpoint(8.0);
    let mut tripped_at_s = None;
    for _ in 0..1000 {
        run(&mut drive, 0.01);
        if drive.fault().is_some() {
            tripped_at_s = Some(drive.time_s());
            break;
        }
    }
    // 19 W of copper loss into 15 J/K: about 1.3 K/s, so 5 K take about 4 s.
    let tripped_at_s = tripped_at_s.expect("stalled at 8 A the winding must pass 30 °C");
    assert!((3.0..6.0).contains(&tripped_at_s), "tripped at {tripped_at_s} s");
    let text = drive.fault().map(ToString::to_string).unwrap_or_default();
    assert!(text.contains("over-temperature") && text.contains("30 °C"), "{text}");
    // Unpowered, the load would now run the shaft backwards and rectify its back-EMF into
    // the bus, heating the winding again: take it off, as a holding brake would.
    drive.write_param("load_torque_nm", 0.0).expect("in range");
    run(&mut drive, 1.5);
    assert!(drive.plant.temperature_c < 30.0, "still hot: {}", drive.plant.temperature_c);
    assert_latches(&mut drive, |f| matches!(f, SimFault::OverTemperature { .. }));
}

#[test]
fn over_temperature_trips_again_while_still_hot() {
    let mut drive = SimDrive::new(&SimConfig::default());
    drive.plant.temperature_c = 130.0;
    run(&mut drive, 0.01);
    assert!(matches!(drive.fault(), Some(SimFault::OverTemperature { .. })));
    drive.reset_faults();
    run(&mut drive, 0.01);
    assert!(drive.fault().is_some(), "a winding still above the trip must trip again");
}

#[test]
fn following_error_trips_and_latches() {
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Position);
    // More than the 0.36 N·m the motor makes at its current limit: it is back-driven.
    drive.write_param("load_torque_nm", 0.6).expect("in range");
    let frames = run(&mut drive, 1.0);
    let fault = drive.fault().cloned().expect("a back-driven axis must trip on following error");
    assert!(fault.to_string().contains("2 rev"), "{fault}");
    let tripped = frames.iter().position(|f| f.current_setpoint_a == 0.0).expect("the stage went off");
    let at_trip = &frames[tripped - 1];
    let error_rev = (at_trip.position_setpoint_rev - at_trip.position_rev).abs();
    assert!((1.9..2.1).contains(&error_rev), "tripped at an error of {error_rev} rev");
    drive.write_param("load_torque_nm", 0.0).expect("in range");
    assert_latches(&mut drive, |f| matches!(f, SimFault::FollowingError { .. }));
}

#[test]
fn current_integrator_does_not_wind_up_against_the_bus_voltage() {
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Current);
    // At 12 V the back-EMF eats the whole voltage near 2400 rpm: 8 A cannot flow there, so
    // the current loop sits in voltage saturation for seconds.
    drive.write_param("bus_voltage_v", 12.0).expect("in range");
    drive.set_setpoint(8.0);
    let frames = run(&mut drive, 2.0);
    let last = frames.last().expect("frames");
    assert!(last.current_a < 2.0, "the current should be voltage-limited: {}", last.current_a);
    assert!(drive.current_pi.integral.abs() < 12.0, "integrator wound up to {} V", drive.current_pi.integral);
    drive.set_setpoint(0.0);
    let frames = run(&mut drive, 0.01);
    let settled = frames.iter().skip(3).all(|f| f.current_a.abs() < 0.3);
    assert!(settled, "current must follow the new setpoint within 3 ms: {:?}", &frames[..5]);
}

#[test]
fn speed_integrator_does_not_wind_up_when_the_speed_is_out_of_reach() {
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Speed);
    drive.write_param("bus_voltage_v", 12.0).expect("in range");
    // Reachable at 12 V: about 2410 rpm. The remaining error (≈ 90 rpm) is small enough that
    // the proportional term alone does not saturate the current reference, so only the
    // inner-loop anti-windup keeps the integrator from running up to the current limit.
    let reachable_rpm = drive.config().motor.no_load_speed_rpm(MAX_DUTY * 12.0);
    drive.set_setpoint(2500.0);
    let frames = run(&mut drive, 2.0);
    let top_rpm = tail_mean(&frames, 0.1, |f| f.speed_rpm);
    assert!(
        (top_rpm - reachable_rpm).abs() < 30.0,
        "voltage-limited at {top_rpm}, expected ≈ {reachable_rpm}"
    );
    let proportional_a = drive.config().drive.speed_kp * (2500.0 - top_rpm);
    assert!(
        proportional_a < 0.8 * drive.config().drive.current_limit_a,
        "P alone saturates: {proportional_a}"
    );
    assert!(
        drive.speed_pi.integral.abs() < 1.0,
        "speed integrator wound up to {} A",
        drive.speed_pi.integral
    );

    drive.set_setpoint(1500.0);
    let t0_s = drive.time_s();
    let frames = run(&mut drive, 0.5);
    let lowest_rpm = frames.iter().map(|f| f.speed_rpm).fold(f64::MAX, f64::min);
    assert!(lowest_rpm > 1400.0, "undershoot to {lowest_rpm}");
    let last_outside_s =
        frames.iter().rev().find(|f| (f.speed_rpm - 1500.0).abs() > 30.0).map_or(0.0, |f| f.t_s - t0_s);
    assert!(last_outside_s < 0.15, "settled only after {last_outside_s} s");
}

#[test]
fn same_seed_same_frames_different_seed_different_frames() {
    let script = |seed: u64| {
        let mut drive = SimDrive::new(&SimConfig { seed, ..SimConfig::default() });
        let mut frames = Vec::new();
        drive.enable().expect("no fault");
        drive.set_setpoint(800.0);
        drive.advance(0.2, &mut frames);
        drive.write_param("load_torque_nm", 0.05).expect("in range");
        drive.set_mode(ControlMode::Position);
        drive.set_setpoint(3.0);
        drive.advance(0.3, &mut frames);
        frames
    };
    let first = script(7);
    assert_eq!(first.len(), 500);
    assert_eq!(first, script(7), "same seed and calls must give identical frames");
    assert_ne!(first, script(8));
}

#[test]
fn telemetry_rate_gives_exactly_spaced_frames() {
    let mut drive = SimDrive::new(&SimConfig::default());
    let frames = run(&mut drive, 1.0);
    assert_eq!(frames.len(), 1000);
    for (index, frame) in frames.iter().enumerate() {
        assert_eq!(frame.t_s, index as f64 / 1000.0, "frame {index}");
    }
    assert_eq!(drive.time_s(), 1.0);

    // 3 kHz does not divide the 20 kHz step: frames fall on the nearest following step, and
    // the count stays exact.
    drive.write_param("telemetry_rate_hz", 3000.0).expect("in range");
    let frames = run(&mut drive, 1.0);
    assert!((2999..=3001).contains(&frames.len()), "{} frames", frames.len());
    for pair in frames.windows(2) {
        let spacing_steps = ((pair[1].t_s - pair[0].t_s) * STEP_RATE_HZ).round();
        assert!(spacing_steps == 6.0 || spacing_steps == 7.0, "{spacing_steps}");
    }
}

#[test]
fn uneven_chunks_give_the_same_frames_as_one_advance() {
    let start = |drive: &mut SimDrive| {
        drive.enable().expect("no fault");
        drive.set_setpoint(1200.0);
    };
    let mut whole = SimDrive::new(&SimConfig::default());
    start(&mut whole);
    let whole_frames = run(&mut whole, 73.0 * 0.0137);

    let mut chunked = SimDrive::new(&SimConfig::default());
    start(&mut chunked);
    let mut chunked_frames = Vec::new();
    for _ in 0..73 {
        chunked.advance(0.0137, &mut chunked_frames);
    }
    assert_eq!(whole_frames.len(), 1001);
    assert_eq!(whole_frames, chunked_frames);
    assert_eq!(whole.time_s(), chunked.time_s());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn any_chunking_gives_the_same_frames(chunks in proptest::collection::vec(1e-6..0.03f64, 1..20)) {
        let total_s: f64 = chunks.iter().sum();
        let mut whole = SimDrive::new(&SimConfig::default());
        whole.enable().expect("no fault");
        whole.set_setpoint(500.0);
        let whole_frames = run(&mut whole, total_s);

        let mut chunked = SimDrive::new(&SimConfig::default());
        chunked.enable().expect("no fault");
        chunked.set_setpoint(500.0);
        let mut chunked_frames = Vec::new();
        for chunk in &chunks {
            chunked.advance(*chunk, &mut chunked_frames);
        }
        prop_assert_eq!(whole.time_s(), chunked.time_s());
        prop_assert_eq!(whole_frames, chunked_frames);
    }

    #[test]
    fn setpoints_and_time_steps_never_produce_non_finite_telemetry(
        setpoint in -1e9..1e9f64,
        mode_index in 0usize..3,
        dt_s in -1.0..0.05f64,
    ) {
        let mut drive = enabled_drive(&SimConfig::default(), ControlMode::ALL[mode_index]);
        drive.set_setpoint(setpoint);
        drive.set_setpoint(f64::NAN);
        let mut frames = Vec::new();
        drive.advance(dt_s, &mut frames);
        drive.advance(0.02, &mut frames);
        prop_assert!(frames.iter().all(|f| f.values().iter().all(|v| v.is_finite())));
    }
}

#[test]
fn non_positive_or_non_finite_advance_does_nothing() {
    let mut drive = SimDrive::new(&SimConfig::default());
    for dt_s in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(run(&mut drive, dt_s).is_empty());
    }
    assert_eq!(drive.time_s(), 0.0);
}

#[test]
fn position_move_of_5_rev_arrives_without_fault() {
    for config in [SimConfig::default(), SimConfig::alternative()] {
        let mut drive = enabled_drive(&config, ControlMode::Position);
        assert_eq!(drive.setpoint(), 0.0, "position mode starts at the present position");
        drive.set_setpoint(5.0);
        let frames = run(&mut drive, 2.0);
        assert!(drive.fault().is_none(), "{:?}", drive.fault());
        let final_rev = tail_mean(&frames, 0.1, |f| f.position_rev);
        assert!((final_rev - 5.0).abs() < 0.01, "final position {final_rev}");
        let peak_rev = frames.iter().map(|f| f.position_rev).fold(f64::MIN, f64::max);
        assert!(peak_rev < 5.02, "overshoot to {peak_rev}");
        let last = frames.last().expect("frames");
        assert_eq!(last.position_setpoint_rev, 5.0, "the profile ends on the target");
        let worst_error =
            frames.iter().map(|f| (f.position_setpoint_rev - f.position_rev).abs()).fold(0.0, f64::max);
        assert!(worst_error < 0.25 * config.drive.following_error_rev, "following error {worst_error}");
    }
}

#[test]
fn load_torque_raises_the_current_by_load_over_kt() {
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Speed);
    drive.set_setpoint(1000.0);
    let unloaded = run(&mut drive, 0.5);
    let unloaded_a = tail_mean(&unloaded, 0.2, |f| f.current_a);
    drive.write_param("load_torque_nm", 0.1).expect("in range");
    let loaded = run(&mut drive, 0.5);
    let loaded_a = tail_mean(&loaded, 0.2, |f| f.current_a);
    let expected_a = 0.1 / SimConfig::default().motor.torque_constant_nm_per_a;
    let rise_a = loaded_a - unloaded_a;
    assert!(
        (rise_a - expected_a).abs() < 0.03 * expected_a,
        "current rose {rise_a} A, expected {expected_a}"
    );
    let loaded_rpm = tail_mean(&loaded, 0.2, |f| f.speed_rpm);
    assert!((loaded_rpm - 1000.0).abs() < 5.0, "the integrator must remove the speed droop: {loaded_rpm}");
}

#[test]
fn stiction_holds_a_disabled_motor_against_a_small_load() {
    let mut drive = SimDrive::new(&SimConfig::default());
    drive.write_param("load_torque_nm", 0.004).expect("in range");
    run(&mut drive, 1.0);
    assert_eq!(drive.plant.speed_rad_s, 0.0);
    assert_eq!(drive.plant.position_rad, 0.0);

    // Above the 5 mN·m breakaway torque the load turns the shaft backwards.
    drive.write_param("load_torque_nm", 0.006).expect("in range");
    run(&mut drive, 1.0);
    assert!(drive.plant.speed_rad_s < -1.0, "speed {}", drive.plant.speed_rad_s);
}

#[test]
fn disabled_motor_coasts_down_and_stops_for_good() {
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Speed);
    drive.set_setpoint(2000.0);
    run(&mut drive, 0.5);
    drive.disable();
    assert_eq!(drive.setpoint(), 2000.0, "disable keeps the setpoint");
    let frames = run(&mut drive, 0.1);
    assert!(frames.iter().skip(2).all(|f| f.current_a.abs() < 0.1), "the winding current must die out");
    let speed_rpm = frames.last().map_or(0.0, |f| f.speed_rpm);
    // Friction alone takes about 3 s to stop it.
    assert!((1850.0..1990.0).contains(&speed_rpm), "coasting at {speed_rpm}");
    run(&mut drive, 5.0);
    assert_eq!(drive.plant.speed_rad_s, 0.0, "friction stops the shaft without chattering");
    let position = drive.plant.position_rad;
    run(&mut drive, 0.5);
    assert_eq!(drive.plant.position_rad, position);
}

#[test]
fn estop_switches_off_and_zeroes_the_setpoint() {
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Speed);
    drive.set_setpoint(1500.0);
    run(&mut drive, 0.3);
    drive.estop();
    assert!(!drive.is_enabled());
    assert_eq!(drive.setpoint(), 0.0);
    assert!(drive.fault().is_none(), "an e-stop is not a fault");
    let frames = run(&mut drive, 0.01);
    assert!(frames.iter().all(|f| f.current_setpoint_a == 0.0));
}

#[test]
fn mode_change_while_moving_is_bumpless() {
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Speed);
    drive.set_setpoint(2000.0);
    run(&mut drive, 0.4);
    drive.set_mode(ControlMode::Position);
    let hold_rev = drive.setpoint();
    assert!(hold_rev > 5.0, "the setpoint becomes the present position: {hold_rev}");
    let frames = run(&mut drive, 1.5);
    assert!(drive.fault().is_none(), "{:?}", drive.fault());
    let first = frames.first().expect("frames");
    assert!(
        first.speed_setpoint_rpm > 1800.0,
        "the speed reference must not jump: {}",
        first.speed_setpoint_rpm
    );
    let final_rev = tail_mean(&frames, 0.1, |f| f.position_rev);
    assert!((final_rev - hold_rev).abs() < 0.01, "returns to {hold_rev}, is at {final_rev}");

    drive.set_mode(ControlMode::Current);
    assert_eq!(drive.setpoint(), 0.0);
    drive.set_mode(ControlMode::Speed);
    assert_eq!(drive.setpoint(), 0.0);
    drive.set_setpoint(100.0);
    drive.set_mode(ControlMode::Speed);
    assert_eq!(drive.setpoint(), 100.0, "selecting the active mode changes nothing");
}

#[test]
fn enabling_position_mode_on_a_coasting_shaft_brakes_and_returns() {
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Speed);
    drive.set_setpoint(3000.0);
    run(&mut drive, 0.3);
    drive.disable();
    drive.set_mode(ControlMode::Position);
    run(&mut drive, 0.05);
    assert!(drive.plant.speed_rad_s * RPM_PER_RAD_S > 2500.0, "still coasting");
    drive.enable().expect("no fault");
    let enabled_at_rev = drive.setpoint();
    let frames = run(&mut drive, 1.5);
    assert!(drive.fault().is_none(), "{:?}", drive.fault());
    let first = frames.first().expect("frames");
    assert!(
        first.speed_setpoint_rpm > 2500.0,
        "the reference continues the motion: {}",
        first.speed_setpoint_rpm
    );
    let final_rev = tail_mean(&frames, 0.1, |f| f.position_rev);
    assert!((final_rev - enabled_at_rev).abs() < 0.01, "returns to {enabled_at_rev}, is at {final_rev}");
}

#[test]
fn thermal_steady_state_matches_the_analytic_value() {
    // A quicker winding (τ = 4 K/W × 0.25 J/K = 1 s) so the steady state comes in seconds.
    let mut config = SimConfig::default();
    config.motor.thermal_capacitance_j_per_k = 0.25;
    let current_a = 4.0;
    let mut drive = enabled_drive(&config, ControlMode::Current);
    // The load balances the motor torque, so the shaft stays at rest and the current steady.
    drive.write_param("load_torque_nm", config.motor.torque_constant_nm_per_a * current_a).expect("in range");
    drive.set_setpoint(current_a);
    let frames = run(&mut drive, 8.0);
    assert_eq!(drive.plant.speed_rad_s, 0.0, "the shaft must stay stalled");
    let measured_c = tail_mean(&frames, 0.5, |f| f.temperature_c);
    // ΔT = I²·R(T)·R_th with R(T) = R₀·(1 + α·ΔT) (ambient = reference temperature), solved for ΔT.
    let motor = &config.motor;
    let loss_per_kelvin_rise = current_a.powi(2) * motor.resistance_ohm * motor.thermal_resistance_k_per_w;
    let rise_k = loss_per_kelvin_rise / (1.0 - motor.resistance_temp_coeff_per_k * loss_per_kelvin_rise);
    let expected_c = motor.ambient_temperature_c + rise_k;
    assert!(
        (measured_c - expected_c).abs() < 0.02 * rise_k,
        "steady temperature {measured_c} °C, expected {expected_c} °C"
    );
}

#[test]
fn bus_voltage_sags_under_load_and_is_measured_with_noise() {
    let mut drive = SimDrive::new(&SimConfig::default());
    let idle = run(&mut drive, 0.5);
    let idle_v = mean(idle.iter().map(|f| f.voltage_v));
    assert!((idle_v - 24.0).abs() < 0.02, "idle bus {idle_v}");
    let spread_v = (mean(idle.iter().map(|f| (f.voltage_v - idle_v).powi(2)))).sqrt();
    assert!((0.03..0.07).contains(&spread_v), "voltage noise σ {spread_v}");
    drive.enable().expect("no fault");
    drive.set_setpoint(4000.0);
    let accelerating = run(&mut drive, 0.1);
    let late = &accelerating[50..];
    let loaded_v = mean(late.iter().map(|f| f.voltage_v));
    assert!(loaded_v < 23.9 && loaded_v > 23.0, "bus under load {loaded_v}");
}

#[test]
fn measurement_noise_has_the_configured_size() {
    let mut drive = SimDrive::new(&SimConfig::default());
    let frames = run(&mut drive, 2.0);
    let sigma = |signal: fn(&TelemetryFrame) -> f64| {
        let m = mean(frames.iter().map(signal));
        mean(frames.iter().map(|f| (signal(f) - m).powi(2))).sqrt()
    };
    let speed_sigma = sigma(|f| f.speed_rpm);
    let current_sigma = sigma(|f| f.current_a);
    assert!((1.8..2.2).contains(&speed_sigma), "speed σ {speed_sigma}");
    assert!((0.018..0.022).contains(&current_sigma), "current σ {current_sigma}");
    assert!(frames.iter().all(|f| f.position_rev == 0.0), "a still shaft reads a constant position");

    drive.write_param("speed_noise_rpm", 0.0).expect("in range");
    let frames = run(&mut drive, 0.1);
    assert!(frames.iter().all(|f| f.speed_rpm == 0.0));
}

#[test]
fn position_is_quantised_to_encoder_counts_and_multi_turn() {
    let mut drive = enabled_drive(&SimConfig::default(), ControlMode::Position);
    drive.set_setpoint(-12.3);
    let frames = run(&mut drive, 2.0);
    let final_rev = tail_mean(&frames, 0.1, |f| f.position_rev);
    assert!((final_rev + 12.3).abs() < 0.01, "at {final_rev}");
    assert!(frames.iter().all(|f| (f.position_rev * 4096.0).fract() == 0.0));
}

#[test]
fn signals_match_values() {
    let frame = TelemetryFrame {
        t_s: 0.5,
        speed_rpm: 1.0,
        current_a: 2.0,
        position_rev: 3.0,
        voltage_v: 4.0,
        temperature_c: 5.0,
        speed_setpoint_rpm: 6.0,
        current_setpoint_a: 7.0,
        position_setpoint_rev: 8.0,
    };
    assert_eq!(frame.values(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let names: Vec<&str> = TelemetryFrame::SIGNALS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names[0], "speed_rpm");
    assert_eq!(names[7], "position_setpoint_rev");
    for (name, unit) in TelemetryFrame::SIGNALS {
        let suffix = name.rsplit('_').next().unwrap_or_default();
        let expected_unit = match suffix {
            "rpm" => "rpm",
            "a" => "A",
            "rev" => "rev",
            "v" => "V",
            "c" => "°C",
            other => panic!("signal {name} has no unit suffix ({other})"),
        };
        assert_eq!(unit, expected_unit, "{name}");
    }
}

#[test]
fn every_catalogue_key_is_readable_and_unique() {
    let drive = SimDrive::new(&SimConfig::default());
    let specs = SimDrive::param_specs();
    for spec in &specs {
        let value = drive.read_param(&spec.key).expect("catalogued keys are readable");
        assert!(value.is_finite(), "{}", spec.key);
        assert!(
            spec.min <= value && value <= spec.max,
            "default {} = {value} outside {}..{}",
            spec.key,
            spec.min,
            spec.max
        );
        assert!(!spec.help.is_empty() && !spec.label.is_empty() && !spec.unit.is_empty(), "{}", spec.key);
        assert_eq!(specs.iter().filter(|other| other.key == spec.key).count(), 1, "duplicate {}", spec.key);
    }
    for key in [
        "current_kp",
        "current_ki",
        "speed_kp",
        "speed_ki",
        "position_kp",
        "current_limit_a",
        "speed_limit_rpm",
        "overcurrent_trip_a",
        "overtemp_trip_c",
        "following_error_rev",
        "load_torque_nm",
        "bus_voltage_v",
        "telemetry_rate_hz",
    ] {
        let spec = specs.iter().find(|s| s.key == key).expect("required key");
        assert!(!spec.read_only, "{key} must be writable");
        assert!(spec.min >= -2.0 && spec.max > spec.min, "{key}");
    }
    for key in ["motor_resistance_ohm", "motor_inductance_h", "torque_constant_nm_per_a", "inertia_kgm2"] {
        assert!(specs.iter().any(|s| s.key == key && s.read_only), "{key} must be read-only");
    }
    let unit_of = |key: &str| specs.iter().find(|s| s.key == key).map(|s| s.unit.clone());
    assert_eq!(unit_of("current_limit_a").as_deref(), Some("A"));
    assert_eq!(unit_of("speed_limit_rpm").as_deref(), Some("rpm"));
    assert!(
        specs
            .iter()
            .filter(|s| s.key.contains("limit"))
            .all(|s| s.key.ends_with("_a") || s.key.ends_with("_rpm")),
        "only current and speed limits may carry `limit` in their key"
    );
    assert!(matches!(
        drive.read_param("no_such_param"),
        Err(SimError::Param(LimitError::UnknownParam { .. }))
    ));
}

#[test]
fn writes_are_range_checked_and_read_only_keys_refused() {
    let mut drive = SimDrive::new(&SimConfig::default());
    for spec in SimDrive::param_specs() {
        let before = drive.read_param(&spec.key).expect("readable");
        if spec.read_only {
            let refused = drive.write_param(&spec.key, before);
            assert!(matches!(refused, Err(SimError::Param(LimitError::ReadOnly { .. }))), "{}", spec.key);
            continue;
        }
        let above = spec.max + 1.0 + spec.max.abs() * 0.1;
        let below = spec.min - 1.0 - spec.min.abs() * 0.1;
        for bad in [above, below] {
            let refused = drive.write_param(&spec.key, bad);
            assert!(
                matches!(refused, Err(SimError::Param(LimitError::OutOfRange { .. }))),
                "{} = {bad}",
                spec.key
            );
        }
        let refused = drive.write_param(&spec.key, f64::NAN);
        assert!(matches!(refused, Err(SimError::Param(LimitError::NotFinite { .. }))), "{}", spec.key);
        assert_eq!(drive.read_param(&spec.key), Ok(before), "a refused write changes nothing");

        let inside = 0.5 * (spec.min + spec.max);
        drive.write_param(&spec.key, inside).expect("in range");
        assert_eq!(drive.read_param(&spec.key), Ok(inside), "{}", spec.key);
    }
    assert_eq!(drive.config().drive.current_limit_a, drive.read_param("current_limit_a").expect("readable"));
    assert!(drive.write_param("no_such_param", 1.0).is_err());
    // The drive still runs with every parameter at mid-range.
    let frames = run(&mut drive, 0.01);
    assert!(frames.iter().all(|f| f.values().iter().all(|v| v.is_finite())));
}

#[test]
fn config_round_trips_through_ron_and_missing_fields_default() {
    let config = SimConfig::alternative();
    let text = ron::to_string(&config).expect("serialisable");
    let back: SimConfig = ron::from_str(&text).expect("deserialisable");
    assert_eq!(back, config);

    let partial: SimConfig =
        ron::from_str("(seed: 42, motor: (load_torque_nm: 0.1))").expect("partial config");
    assert_eq!(partial.seed, 42);
    assert_eq!(partial.motor.load_torque_nm, 0.1);
    assert_eq!(partial.motor.inertia_kgm2, MotorParams::default().inertia_kgm2);
    assert_eq!(partial.drive, DriveParams::default());
    assert_eq!(partial.telemetry_rate_hz, 1000.0);
}

#[test]
fn absurd_configs_are_brought_into_range() {
    let mut config = SimConfig::default();
    config.motor.inductance_h = 0.0;
    config.motor.inertia_kgm2 = -1.0;
    config.motor.resistance_ohm = f64::NAN;
    config.drive.current_limit_a = f64::INFINITY;
    config.telemetry_rate_hz = 0.0;
    config.drive.encoder_counts_per_rev = 0;
    let mut drive = SimDrive::new(&config);
    assert!(drive.config().motor.inductance_h > 0.0);
    assert!(drive.config().motor.inertia_kgm2 > 0.0);
    assert_eq!(drive.config().motor.resistance_ohm, MotorParams::default().resistance_ohm);
    assert_eq!(drive.config().drive.current_limit_a, DriveParams::default().current_limit_a);
    assert_eq!(drive.config().telemetry_rate_hz, 10.0);
    assert!(drive.config().drive.encoder_counts_per_rev >= 16);
    drive.enable().expect("no fault");
    drive.set_setpoint(1000.0);
    let frames = run(&mut drive, 0.5);
    assert_eq!(frames.len(), 5);
    assert!(frames.iter().all(|f| f.values().iter().all(|v| v.is_finite())));
}

#[test]
fn fault_texts_name_the_threshold() {
    let over_current = SimFault::OverCurrent { current_a: -23.456, trip_a: 20.0 };
    assert_eq!(over_current.to_string(), "over-current: |i| = 23.46 A exceeded 20 A");
    let hot = SimFault::OverTemperature { temperature_c: 120.04, trip_c: 120.0 };
    assert_eq!(hot.to_string(), "over-temperature: winding at 120.0 °C exceeded 120 °C");
    let lag = SimFault::FollowingError { error_rev: 2.0004, limit_rev: 2.0 };
    assert_eq!(lag.to_string(), "following error: |error| = 2.000 rev exceeded 2 rev");
    let refused = SimError::Faulted(lag);
    assert!(refused.to_string().contains("reset faults first"), "{refused}");
}
