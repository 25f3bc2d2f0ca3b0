//! End to end over pseudo-terminals: `drivebench emulate` serves a simulated drive speaking a
//! protocol, and `drivebench record` / `drivebench params` talk to it through the real serial
//! link — the same code that opens `/dev/ttyUSB0`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_drivebench");

/// Tests that time a drive's response (settling, E-STOP, reconnects) run one at a time: on a
/// small machine a dozen emulators and hosts at once would measure the scheduler.
static TIMED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn timed() -> std::sync::MutexGuard<'static, ()> {
    TIMED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Test runs log outside the user's home.
fn test_log_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("drivebench-test-logs")
}

/// A running `drivebench emulate`, killed when dropped.
struct Emulator {
    child: Child,
    path: String,
}

impl Emulator {
    fn start(protocol: &str, extra: &[&str]) -> Emulator {
        let mut child = Command::new(BIN)
            .args(["emulate", "--protocol", protocol])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start drivebench emulate");
        let stdout = child.stdout.take().expect("stdout");
        // The first line is the device path; it comes at once, before any serving.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let path =
            rx.recv_timeout(Duration::from_secs(30)).expect("emulate printed no path").trim().to_owned();
        assert!(path.starts_with("/dev/"), "first line should be a device path, got {path:?}");
        Emulator { child, path }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("DRIVEBENCH_LOG_DIR", test_log_dir()).output().expect("run drivebench")
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `speed_rpm` values of the last `tail_s` seconds of a recording.
fn speed_tail(csv_path: &Path, tail_s: f64) -> Vec<f64> {
    let mut reader = csv::Reader::from_path(csv_path).expect("csv");
    let headers = reader.headers().expect("headers").clone();
    let col = headers.iter().position(|h| h.ends_with(".speed_rpm")).expect("a speed_rpm column");
    let rows: Vec<(f64, Option<f64>)> = reader
        .records()
        .map(|r| {
            let r = r.expect("row");
            (r[0].parse().expect("time"), r.get(col).and_then(|v| v.parse().ok()))
        })
        .collect();
    let end = rows.last().expect("rows").0;
    rows.iter().filter(|(t, _)| *t >= end - tail_s).filter_map(|(_, v)| *v).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "no values");
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The last second of a recorded speed step holds at least `min_samples` speeds, settled
/// near 600 rpm.
fn assert_settled_near_600(speeds: Vec<f64>, min_samples: usize) {
    assert!(speeds.len() >= min_samples, "{} samples in the last second", speeds.len());
    let m = median(speeds);
    assert!((m - 600.0).abs() < 30.0, "median speed {m}");
}

fn record_speed_step(protocol: &str, spec_extra: &str) -> Vec<f64> {
    let _one_at_a_time = timed();
    let emu = Emulator::start(protocol, &["--rate", "200"]);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("out.csv");
    let spec = format!("{protocol}:{}{spec_extra}", emu.path);
    let out = run(&[
        "record",
        "--drive",
        &spec,
        "--seconds",
        "3",
        "--csv",
        csv.to_str().unwrap(),
        "--enable",
        "--mode",
        "speed",
        "--setpoint",
        "600",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    speed_tail(&csv, 1.0)
}

#[test]
fn plotter_telemetry_is_recorded() {
    // The sketch holds 600 rpm by itself; 200 lines/s for the last second.
    assert_settled_near_600(record_speed_step("plotter", ""), 100);
}

#[test]
fn simplefoc_speed_step_settles() {
    assert_settled_near_600(record_speed_step("simplefoc", ",motor=M"), 20);
}

#[test]
fn vesc_speed_step_settles() {
    assert_settled_near_600(record_speed_step("vesc", ",pole_pairs=7"), 20);
}

/// Spins the drive up to 1500 rpm under a `record` host, kills the host outright (SIGKILL: no
/// disable goes out, no keep-alive any more), waits 2.5 s and records 0.5 s with a second host.
/// Returns that host's output and the speeds it saw.
fn kill_the_host_at_speed(protocol: &str) -> (Output, Vec<f64>) {
    let emu = Emulator::start(protocol, &[]);
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("{protocol}:{}", emu.path);
    let running = dir.path().join("running.csv");
    let mut host = Command::new(BIN)
        .env("DRIVEBENCH_LOG_DIR", test_log_dir())
        .args(["record", "--drive", &spec, "--seconds", "60", "--csv", running.to_str().unwrap()])
        .args(["--enable", "--mode", "speed", "--setpoint", "1500"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Up to speed (rows are flushed to the file every second).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fast = std::fs::metadata(&running).is_ok_and(|m| m.len() > 0)
            && csv::Reader::from_path(&running).is_ok_and(|mut r| {
                r.records()
                    .filter_map(Result::ok)
                    .any(|row| row.get(1).and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v > 1400.0))
            });
        if fast {
            break;
        }
        assert!(Instant::now() < deadline, "the motor never got up to speed");
        std::thread::sleep(Duration::from_millis(100));
    }
    host.kill().unwrap();
    host.wait().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let after = dir.path().join("after.csv");
    let out = run(&["record", "--drive", &spec, "--seconds", "0.5", "--csv", after.to_str().unwrap()]);
    let speeds = speed_tail(&after, 0.5);
    (out, speeds)
}

/// A host killed outright sends nothing more: the VESC's own 1 s timeout releases the motor.
#[test]
fn vesc_releases_the_motor_when_the_host_dies() {
    let (out, speeds) = kill_the_host_at_speed("vesc");
    // Another host looks: the timeout fired and the motor coasted down.
    assert!(out.status.success(), "{}", text(&out));
    let m = median(speeds);
    assert!(m.abs() < 600.0, "the motor still turns at {m} rpm 2.5 s after the host died");
}

#[test]
fn modbus_speed_step_settles() {
    assert_settled_near_600(record_speed_step("modbus", "@19200,unit=1"), 20);
}

#[test]
fn modbus_gain_round_trips_and_out_of_range_is_refused_before_sending() {
    let emu = Emulator::start("modbus", &[]);
    let spec = format!("modbus:{}@19200,unit=1", emu.path);
    let out = run(&["params", "--drive", &spec, "--set", "velocity_kp=0.5", "--get", "velocity_kp"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().filter(|l| *l == "velocity_kp = 0.5 A/rpm").count(), 2, "{stdout}");
    // Outside the map's range (0 … 2): refused with the range, nothing written.
    let out = run(&["params", "--drive", &spec, "--set", "velocity_kp=5", "--get", "velocity_kp"]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("velocity_kp") && err.contains("outside"), "{err}");
    let out = run(&["params", "--drive", &spec, "--get", "velocity_kp", "--get", "current_limit"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("velocity_kp = 0.5 A/rpm"), "{stdout}");
    // Above the project's 8 A: refused by the project limit.
    let out = run(&["params", "--drive", &spec, "--set", "current_limit=20"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("project limit"), "{}", text(&out));
}

#[test]
fn odrive_speed_step_settles() {
    assert_settled_near_600(record_speed_step("odrive", ",axis=0"), 20);
}

/// `params --set KEY=V --get KEY` prints the value the drive now holds.
fn round_trip(protocol: &str, key: &str, value: f64) {
    let emu = Emulator::start(protocol, &[]);
    let spec = format!("{protocol}:{}", emu.path);
    let set = format!("{key}={value}");
    let out = run(&["params", "--drive", &spec, "--set", &set, "--get", key]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with(&format!("{key} = "))).collect();
    assert_eq!(lines.len(), 2, "one line for the write, one for the read:\n{stdout}");
    for line in lines {
        let v: f64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!((v - value).abs() <= 1e-3 * value.abs().max(1.0), "{line}");
    }
    // The whole catalogue lists with units and ranges.
    let out = run(&["params", "--drive", &spec, "--list"]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.lines().any(|l| l.starts_with(&format!("{key} = {value}"))), "{listing}");
    assert!(listing.lines().count() >= 5, "{listing}");
    assert!(listing.contains(" … "), "{listing}");
}

#[test]
fn simplefoc_gain_round_trips() {
    round_trip("simplefoc", "velocity_kp", 0.35);
}

#[test]
fn odrive_gain_round_trips() {
    round_trip("odrive", "vel_gain", 0.25);
}

#[test]
fn out_of_range_write_is_refused_before_sending() {
    let emu = Emulator::start("odrive", &[]);
    let spec = format!("odrive:{}", emu.path);
    // 50 A is above the project's 8 A envelope for current limits.
    let out = run(&["params", "--drive", &spec, "--set", "current_limit_a=50"]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("current_limit_a") && err.contains("limit"), "{err}");
    // The drive still holds its previous value.
    let out = run(&["params", "--drive", &spec, "--get", "current_limit_a"]);
    assert!(out.status.success(), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout);
    let v: f64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(v <= 8.0, "{line}");
}

#[test]
fn missing_port_and_unknown_key_are_clear_errors() {
    let out = run(&["params", "--drive", "odrive:/dev/ttyDOESNOTEXIST9", "--list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/ttyDOESNOTEXIST9") && err.contains("does not exist"), "{err}");

    let emu = Emulator::start("simplefoc", &[]);
    let spec = format!("simplefoc:{}", emu.path);
    let out = run(&["params", "--drive", &spec, "--get", "no_such_key"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no_such_key") && err.contains("catalogue"), "{err}");
}

#[test]
fn ports_lists_or_says_none() {
    let out = run(&["ports"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!out.stdout.is_empty());
}

mod in_process {
    //! The bench itself (as the GUI uses it) against an emulator thread.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use drivebench::bench::{Bench, DriveRuntime};
    use drivebench::drive::{Command, ControlMode, Direction, DriveState};
    use drivebench::link::SerialSettings;
    use drivebench::project::{Connection, DriveConfig, Project, SerialConnection};
    use drivebench::protocol::Protocol;
    use drivebench::sim::SimConfig;
    use drivebench::sim::emulator::Emulator;

    struct Running {
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// An emulator thread: its device path, its fault trigger, and the handle that stops it.
    fn emulate_with_fault(protocol: &Protocol) -> (String, Arc<AtomicBool>, Running) {
        let mut emu = Emulator::new(protocol, 200.0, &SimConfig::default()).expect("emulator");
        let path = emu.path().to_owned();
        let fault = emu.fault_request();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let _ = emu.run(&flag);
        });
        (path, fault, Running { stop, thread: Some(thread) })
    }

    fn emulate(protocol: &Protocol) -> (String, Running) {
        let (path, _, running) = emulate_with_fault(protocol);
        (path, running)
    }

    fn bench_for(path: &str, protocol: Protocol) -> Bench {
        let drive = DriveConfig {
            name: "dut".into(),
            connection: Connection::Serial(SerialConnection {
                link: SerialSettings::new(path, 115_200),
                protocol,
            }),
            ..DriveConfig::default()
        };
        let project = Project { drives: vec![drive], ..Project::default() };
        let mut bench = Bench::new(&project, None);
        bench.connect_all();
        bench
    }

    /// Pumps until `cond` holds; panics with the drive's state and messages after 10 s.
    fn pump_until(bench: &mut Bench, what: &str, cond: impl Fn(&DriveRuntime) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            bench.pump(Duration::from_millis(10));
            if cond(&bench.drives[0]) {
                return;
            }
            if Instant::now() > deadline {
                let d = &bench.drives[0];
                panic!("timed out waiting for {what}: state {:?}, messages {:?}", d.state, d.messages);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn last(d: &DriveRuntime, signal: &str) -> f64 {
        d.telemetry().series(signal).and_then(|s| s.last()).map(|(_, v)| v).unwrap_or(f64::NAN)
    }

    fn enable_step_console_estop(protocol: Protocol, over_limit_line: &str) {
        let (path, _emu) = emulate(&protocol);
        let mut bench = bench_for(&path, protocol);
        pump_until(&mut bench, "the catalogue read", |d| {
            d.state.is_connected()
                && d.telemetry().series("speed_rpm").is_some_and(|s| !s.is_empty())
                && d.catalogue.iter().all(|p| d.values.contains_key(&p.key))
        });
        let d = &mut bench.drives[0];
        d.send(Command::SetMode(ControlMode::Speed)).unwrap();
        d.send(Command::Enable).unwrap();
        pump_until(&mut bench, "enabled", |d| d.state == DriveState::Enabled);
        bench.drives[0].send(Command::SetSetpoint(ControlMode::Speed, 600.0)).unwrap();
        pump_until(&mut bench, "600 rpm", |d| (last(d, "speed_rpm") - 600.0).abs() < 20.0);

        // The console saw both directions.
        let d = &mut bench.drives[0];
        assert!(d.console.entries().any(|e| e.dir == Direction::Tx));
        assert!(d.console.entries().any(|e| e.dir == Direction::Rx));
        // A raw line the protocol understands as a setpoint is held to the project limits:
        // refused with the reason, and never written.
        d.send(Command::Raw(over_limit_line.into())).unwrap();
        pump_until(&mut bench, "the console line refused", |d| {
            d.messages.iter().any(|(_, m)| m.contains(over_limit_line) && m.contains("not sent"))
        });
        let d = &mut bench.drives[0];
        let written = d
            .console
            .entries()
            .any(|e| e.dir == Direction::Tx && String::from_utf8_lossy(&e.bytes).contains(over_limit_line));
        assert!(!written, "the refused line reached the wire");
        let msg = &d.messages.iter().find(|(_, m)| m.contains("not sent")).unwrap().1;
        assert!(msg.contains("4000"), "the reason names the limit: {msg}");
        // E-STOP: the drive reports itself disabled and the motor runs down.
        bench.estop_all();
        pump_until(&mut bench, "disabled after E-STOP", |d| d.state != DriveState::Enabled);
        pump_until(&mut bench, "the motor slowing", |d| last(d, "speed_rpm").abs() < 300.0);
    }

    #[test]
    fn simplefoc_drive_on_the_bench() {
        // 500 rad/s is about 4775 rpm, above the 4000 rpm project limit.
        enable_step_console_estop(Protocol::SimpleFoc { motor: 'M' }, "M500");
    }

    #[test]
    fn odrive_drive_on_the_bench() {
        // 80 turns/s is 4800 rpm, above the 4000 rpm project limit.
        enable_step_console_estop(Protocol::ODrive { axis: 0, checksum: false }, "v 0 80");
    }

    #[test]
    fn odrive_with_checksums_on_the_bench() {
        enable_step_console_estop(Protocol::ODrive { axis: 0, checksum: true }, "v 0 80");
    }

    #[test]
    fn vesc_drive_on_the_bench() {
        // SET_RPM 35000 ERPM = 5000 rpm with 7 pole pairs, above the 4000 rpm project limit.
        let frame = drivebench::protocol::vesc::encode_frame(&[8, 0x00, 0x00, 0x88, 0xB8]);
        let hex: Vec<String> = frame.iter().map(|b| format!("{b:02X}")).collect();
        enable_step_console_estop(Protocol::Vesc { pole_pairs: 7 }, &hex.join(" "));
    }

    #[test]
    fn modbus_drive_on_the_bench() {
        enable_step_console_estop(Protocol::modbus(1), "w target_velocity 5000");
    }

    #[test]
    fn modbus_fault_shows_its_code_and_resets() {
        let protocol = Protocol::modbus(1);
        let (path, fault, _running) = emulate_with_fault(&protocol);
        let mut bench = bench_for(&path, protocol);
        pump_until(&mut bench, "connected", |d| d.state == DriveState::Idle && d.status.is_some());
        bench.drives[0].send(Command::Enable).unwrap();
        pump_until(&mut bench, "operation enabled", |d| {
            d.state == DriveState::Enabled
                && d.status.as_deref().is_some_and(|s| s.contains("operation enabled"))
        });
        fault.store(true, Ordering::Relaxed);
        pump_until(
            &mut bench,
            "the fault with its code",
            |d| matches!(&d.state, DriveState::Fault(t) if t.contains("0x3210")),
        );
        bench.drives[0].send(Command::ResetFaults).unwrap();
        pump_until(&mut bench, "the fault reset", |d| d.state == DriveState::Idle);
        assert!(
            bench.drives[0].status.as_deref().is_some_and(|s| s.contains("switch on disabled")),
            "{:?}",
            bench.drives[0].status
        );
    }

    #[test]
    fn vesc_fault_is_named_and_reset() {
        let protocol = Protocol::Vesc { pole_pairs: 7 };
        let (path, fault, _running) = emulate_with_fault(&protocol);
        let mut bench = bench_for(&path, protocol);
        pump_until(&mut bench, "connected", |d| d.state == DriveState::Idle && d.identity.is_some());
        assert!(bench.drives[0].identity.as_deref().unwrap_or("").contains("VESC"));
        bench.drives[0].send(Command::Enable).unwrap();
        pump_until(&mut bench, "enabled", |d| d.state == DriveState::Enabled);
        fault.store(true, Ordering::Relaxed);
        pump_until(
            &mut bench,
            "the fault",
            |d| matches!(&d.state, DriveState::Fault(t) if t.contains("OVER_CURRENT")),
        );
        // The drive clears its fault code by itself after 500 ms; drivebench keeps showing it
        // until the user resets it.
        std::thread::sleep(Duration::from_millis(700));
        bench.drives[0].send(Command::ResetFaults).unwrap();
        pump_until(&mut bench, "the fault reset", |d| d.state == DriveState::Idle);
    }

    #[test]
    fn plotter_labels_become_signals() {
        let (path, _emu) = emulate(&Protocol::Plotter);
        let mut bench = bench_for(&path, Protocol::Plotter);
        pump_until(&mut bench, "plotter signals", |d| {
            d.signals.len() == 5 && d.telemetry().series("speed_rpm").is_some_and(|s| s.len() > 50)
        });
        let d = &mut bench.drives[0];
        assert!(!d.can_control());
        assert_eq!(d.signal_unit("speed_rpm"), Some("rpm"));
        // Text commands go to the sketch: stop the motor through the console.
        d.send(Command::Raw("stop".into())).unwrap();
        pump_until(&mut bench, "the sketch stopping the motor", |d| last(d, "speed_rpm").abs() < 300.0);
    }
}

#[test]
fn record_names_a_missing_port_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("out.csv");
    let started = std::time::Instant::now();
    let out = run(&[
        "record",
        "--drive",
        "sim",
        "--drive",
        "simplefoc:/dev/ttyGONE7,name=foc",
        "--seconds",
        "1",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("foc") && err.contains("/dev/ttyGONE7") && err.contains("does not exist"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(8), "it should not wait for the connect timeout");
}

mod link_loss {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::wait_until;

    use drivebench::bench::Bench;
    use drivebench::drive::DriveState;
    use drivebench::link::SerialSettings;
    use drivebench::project::{Connection, DriveConfig, Project, SerialConnection};
    use drivebench::protocol::Protocol;
    use drivebench::sim::SimConfig;
    use drivebench::sim::emulator::Emulator;

    #[test]
    fn a_vanished_port_faults_that_drive_only() {
        let protocol = Protocol::Plotter;
        let mut emu = Emulator::new(&protocol, 200.0, &SimConfig::default()).unwrap();
        let path = emu.path().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // The emulator owns both ends of the pseudo-terminal: when it ends, the port vanishes.
        let thread = std::thread::spawn(move || {
            let _ = emu.run(&flag);
        });
        let serial = DriveConfig {
            name: "wired".into(),
            connection: Connection::Serial(SerialConnection {
                link: SerialSettings::new(&path, 115_200),
                protocol,
            }),
            ..DriveConfig::default()
        };
        let project = Project {
            drives: vec![serial, DriveConfig { name: "sim".into(), ..DriveConfig::default() }],
            ..Project::default()
        };
        let mut bench = Bench::new(&project, None);
        bench.connect_all();
        let wait =
            |bench: &mut Bench, what: &str, cond: &dyn Fn(&Bench) -> bool| wait_until(bench, what, 10, cond);
        wait(&mut bench, "telemetry from both", &|b| {
            b.drives.iter().all(|d| d.telemetry().series("speed_rpm").is_some_and(|s| s.len() > 10))
        });
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        wait(&mut bench, "the serial link lost", &|b| {
            matches!(b.drives[0].state, DriveState::LinkLost { .. })
        });
        let DriveState::LinkLost { reason, .. } = &bench.drives[0].state else { unreachable!() };
        assert!(reason.contains("link lost"), "{reason}");
        // Stop the reconnection tries: the vanished pseudo-terminal's number may be reused by
        // another test's emulator.
        bench.drives[0].send(drivebench::drive::Command::Disconnect).unwrap();
        // Its history stays; the simulated drive carries on.
        let kept = bench.drives[0].telemetry().series("speed_rpm").unwrap().len();
        assert!(kept > 10);
        let before = bench.drives[1].telemetry().series("speed_rpm").unwrap().total_pushed();
        wait(&mut bench, "the other drive still streaming", &|b| {
            b.drives[1].telemetry().series("speed_rpm").unwrap().total_pushed() > before + 100
        });
        assert_eq!(bench.drives[1].state, DriveState::Idle);
        assert_eq!(bench.drives[0].telemetry().series("speed_rpm").unwrap().len(), kept);
    }
}

#[test]
fn params_on_a_protocol_without_parameters_says_so_at_once() {
    let emu = Emulator::start("plotter", &[]);
    let spec = format!("plotter:{}", emu.path);
    let started = std::time::Instant::now();
    let out = run(&["params", "--drive", &spec, "--list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no parameters") && err.contains("telemetry"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(8), "it should not wait for a timeout");
}

#[test]
fn a_killed_and_restarted_emulator_is_reconnected_without_re_enabling() {
    let _one_at_a_time = timed();
    use drivebench::bench::Bench;
    use drivebench::drive::{Command as DriveCommand, DriveState};
    use drivebench::link::SerialSettings;
    use drivebench::project::{Connection, DriveConfig, Project, SerialConnection};
    use drivebench::protocol::Protocol;

    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("odrive0");
    let link_arg = link.to_str().unwrap().to_owned();
    let first = Emulator::start("odrive", &["--link", &link_arg]);
    let project = Project {
        drives: vec![DriveConfig {
            name: "od".into(),
            connection: Connection::Serial(SerialConnection {
                link: SerialSettings::new(&link_arg, 115_200),
                protocol: Protocol::ODrive { axis: 0, checksum: false },
            }),
            ..DriveConfig::default()
        }],
        ..Project::default()
    };
    let mut bench = Bench::new(&project, None);
    bench.connect_all();
    let wait = |bench: &mut Bench, what: &str, secs: u64, cond: &dyn Fn(&Bench) -> bool| {
        wait_until(bench, what, secs, cond)
    };
    wait(&mut bench, "streaming", 10, &|b| {
        b.drives[0].telemetry().series("speed_rpm").is_some_and(|s| s.len() > 10)
    });
    bench.drives[0].send(DriveCommand::Enable).unwrap();
    wait(&mut bench, "enabled", 10, &|b| b.drives[0].state == DriveState::Enabled);
    // The adapter is pulled: the emulator process dies.
    drop(first);
    // Unplugged: the device node goes too (a stale link could point at another test's
    // pseudo-terminal once its number is reused).
    let _ = std::fs::remove_file(&link);
    wait(&mut bench, "link lost", 10, &|b| matches!(b.drives[0].state, DriveState::LinkLost { .. }));
    let lost_at = bench.clock.now_s();
    let before = bench.drives[0].telemetry().series("speed_rpm").unwrap().total_pushed();
    std::thread::sleep(Duration::from_millis(1500));
    bench.pump(Duration::from_millis(10));
    assert!(matches!(bench.drives[0].state, DriveState::LinkLost { .. }), "still lost while nothing answers");
    // Plugged back in, at the same place.
    let _second = Emulator::start("odrive", &["--link", &link_arg]);
    wait(&mut bench, "reconnected and streaming", 15, &|b| {
        b.drives[0].state.is_connected()
            && b.drives[0].telemetry().series("speed_rpm").unwrap().total_pushed() > before + 20
    });
    // The board that came back is the same one (same serial number): accepted.
    wait(&mut bench, "the identity read again", 10, &|b| {
        b.drives[0].messages.iter().filter(|(_, m)| m.starts_with("drive reports: ODrive")).count() >= 2
    });
    let d = &bench.drives[0];
    assert!(d.identity.as_ref().is_some_and(|i| i.contains("serial number")), "{:?}", d.identity);
    assert!(d.state.is_connected(), "{:?}", d.state);
    assert_eq!(d.link_losses.len(), 1, "{:?}", d.link_losses);
    assert!(d.link_losses[0].0 <= lost_at);
    assert!(d.messages.iter().any(|(_, m)| m.contains("link back after")), "{:?}", d.messages);
    // The gap is marked in the trace (a NaN breaks the line).
    let telemetry = d.telemetry();
    let speed = telemetry.series("speed_rpm").unwrap();
    assert!(speed.samples_in(0.0, f64::INFINITY).any(|(_, v)| v.is_nan()), "no gap marker");
    // And its interval is kept for the plots to shade: from the loss to the first sample after.
    let gaps: Vec<(f64, Option<f64>)> = telemetry.gaps_in(0.0, f64::INFINITY).collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let (start, end) = gaps[0];
    assert!(start <= lost_at && end.is_some_and(|e| e >= lost_at + 1.5), "{gaps:?} (lost at {lost_at})");
    drop(telemetry);
    // Never enabled again by itself.
    for _ in 0..50 {
        bench.pump(Duration::from_millis(10));
        assert_ne!(bench.drives[0].state, DriveState::Enabled, "re-enabled without being asked");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A Serial Plotter sketch announces its labels afresh after a reconnect, one by one: the
/// history from before the loss stays, and the new lines continue the same traces.
#[test]
fn a_reconnected_serial_plotter_keeps_its_history() {
    let _one_at_a_time = timed();
    use drivebench::bench::Bench;
    use drivebench::drive::DriveState;
    use drivebench::project::{Project, parse_drive_spec};

    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("sketch");
    let link_arg = link.to_str().unwrap().to_owned();
    let first = Emulator::start("plotter", &["--link", &link_arg, "--counter", "--rate", "200"]);
    let drive = parse_drive_spec(&format!("plotter:{link_arg},name=p"), 0).unwrap();
    let mut bench = Bench::new(&Project { drives: vec![drive], ..Project::default() }, None);
    bench.connect_all();
    let wait =
        |bench: &mut Bench, what: &str, cond: &dyn Fn(&Bench) -> bool| wait_until(bench, what, 15, cond);
    let seq_len = |b: &Bench| b.drives[0].telemetry().series("seq").map_or(0, |s| s.len());
    wait(&mut bench, "lines", &|b| seq_len(b) > 100);
    let names_before: Vec<String> = bench.drives[0].signals.iter().map(|s| s.name.clone()).collect();
    drop(first);
    let _ = std::fs::remove_file(&link);
    wait(&mut bench, "link lost", &|b| matches!(b.drives[0].state, DriveState::LinkLost { .. }));
    let lost_at = bench.clock.now_s();
    let before = seq_len(&bench);
    let _second = Emulator::start("plotter", &["--link", &link_arg, "--counter", "--rate", "200"]);
    wait(&mut bench, "lines again", &|b| b.drives[0].state.is_connected() && seq_len(b) > before + 100);
    let d = &bench.drives[0];
    let names_after: Vec<String> = d.signals.iter().map(|s| s.name.clone()).collect();
    assert_eq!(names_after, names_before, "the same signals, in the same places");
    let telemetry = d.telemetry();
    for name in &names_before {
        let series = telemetry.series(name).unwrap();
        let old = series.samples_in(0.0, lost_at).filter(|(_, v)| v.is_finite()).count();
        let new = series.samples_in(lost_at, f64::INFINITY).filter(|(_, v)| v.is_finite()).count();
        assert!(old > 50 && new > 50, "{name}: {old} samples before the loss, {new} after");
    }
    // The counter started again with the new emulator: its trace continues in the same series.
    let seq = telemetry.series("seq").unwrap();
    let last_before = seq.samples_in(0.0, lost_at).filter(|(_, v)| v.is_finite()).last().unwrap().1;
    let first_after = seq.samples_in(lost_at, f64::INFINITY).find(|(_, v)| v.is_finite()).unwrap().1;
    assert!(first_after < last_before, "{first_after} after {last_before}");
}

/// A reconnect by path that reaches another board (its UUID differs) lets go of it: the
/// project's limits and parameters were meant for the first one.
#[test]
fn a_reconnect_that_finds_another_drive_lets_go_of_it() {
    let _one_at_a_time = timed();
    use drivebench::bench::Bench;
    use drivebench::drive::DriveState;
    use drivebench::project::{Project, parse_drive_spec};

    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("vesc0");
    let link_arg = link.to_str().unwrap().to_owned();
    let first = Emulator::start("vesc", &["--link", &link_arg, "--seed", "1"]);
    let drive = parse_drive_spec(&format!("vesc:{link_arg},pole_pairs=7,name=v"), 0).unwrap();
    let mut bench = Bench::new(&Project { drives: vec![drive], ..Project::default() }, None);
    bench.connect_all();
    let wait =
        |bench: &mut Bench, what: &str, cond: &dyn Fn(&Bench) -> bool| wait_until(bench, what, 15, cond);
    wait(&mut bench, "the identity", &|b| b.drives[0].identity.is_some());
    let identity = bench.drives[0].identity.clone().unwrap();
    assert!(identity.contains("UUID"), "{identity}");
    drop(first);
    let _ = std::fs::remove_file(&link);
    wait(&mut bench, "link lost", &|b| matches!(b.drives[0].state, DriveState::LinkLost { .. }));
    // Another controller appears under the same name.
    let _other = Emulator::start("vesc", &["--link", &link_arg, "--seed", "2"]);
    wait(&mut bench, "the other drive refused", &|b| matches!(b.drives[0].state, DriveState::Fault(_)));
    let d = &bench.drives[0];
    let DriveState::Fault(text) = &d.state else { unreachable!() };
    assert!(text.contains("another drive") && text.contains(&identity), "{text}");
    assert!(!d.is_running(), "the worker let go of the port");
    // A Connect by the user accepts it.
    bench.connect(0);
    wait(&mut bench, "connected to the new drive", &|b| {
        b.drives[0].state == DriveState::Idle && b.drives[0].identity.as_ref().is_some_and(|i| *i != identity)
    });
}

#[test]
fn record_keeps_the_others_and_fails_naming_a_drive_that_lost_its_link() {
    let _one_at_a_time = timed();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("foc0");
    let link_arg = link.to_str().unwrap().to_owned();
    let first = Emulator::start("simplefoc", &["--link", &link_arg, "--rate", "200"]);
    let csv_path = dir.path().join("out.csv");
    let spec = format!("simplefoc:{link_arg},name=foc");
    let host = Command::new(BIN)
        .env("DRIVEBENCH_LOG_DIR", test_log_dir())
        .args(["record", "--drive", &spec, "--drive", "sim,name=ref", "--seconds", "6", "--csv"])
        .arg(&csv_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    drop(first);
    // Unplugged: the device node goes too (a stale link could point at another test's
    // pseudo-terminal once its number is reused).
    let _ = std::fs::remove_file(&link);
    std::thread::sleep(Duration::from_millis(1000));
    let _second = Emulator::start("simplefoc", &["--link", &link_arg, "--rate", "200"]);
    let out = host.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a lost link must fail the run: {err}");
    assert!(err.contains("drive `foc` lost its link"), "{err}");
    // The simulated drive was recorded throughout; the serial one before and after the gap.
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let (foc, reference) = (col("foc.speed_rpm"), col("ref.speed_rpm"));
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let times = |c: usize| -> Vec<f64> {
        rows.iter().filter(|r| !r[c].is_empty()).map(|r| r[0].parse().unwrap()).collect()
    };
    let (foc_t, ref_t) = (times(foc), times(reference));
    assert!(ref_t.len() > 5000, "the simulated drive kept recording: {} rows", ref_t.len());
    let gap = foc_t.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(gap > 0.8, "the serial drive's samples should show the gap, biggest step {gap}");
    assert!(foc_t.last().unwrap() - foc_t[0] > 4.0, "samples after the reconnect too");
}

/// E-STOP reaches every drive fast: from the request to the stop handed to the link, for
/// every protocol that can command a drive, with all of them enabled and streaming at once.
#[test]
fn estop_goes_out_to_every_drive_within_20_ms() {
    let _one_at_a_time = timed();
    use drivebench::bench::Bench;
    use drivebench::drive::{Command as DriveCommand, ControlMode, DriveState};
    use drivebench::project::{DriveConfig, Project, parse_drive_spec};

    let kinds = [("simplefoc", ""), ("odrive", ""), ("vesc", ",pole_pairs=7"), ("modbus", "@19200,unit=1")];
    let emulators: Vec<Emulator> = kinds.iter().map(|(p, _)| Emulator::start(p, &[])).collect();
    let mut drives: Vec<DriveConfig> = kinds
        .iter()
        .zip(&emulators)
        .enumerate()
        .map(|(i, ((p, opts), e))| parse_drive_spec(&format!("{p}:{}{opts},name={p}", e.path), i).unwrap())
        .collect();
    drives.push(DriveConfig { name: "sim".into(), ..DriveConfig::default() });
    let mut bench = Bench::new(&Project { drives, ..Project::default() }, None);
    bench.connect_all();
    let wait =
        |bench: &mut Bench, what: &str, cond: &dyn Fn(&Bench) -> bool| wait_until(bench, what, 20, cond);
    wait(&mut bench, "all idle", &|b| b.drives.iter().all(|d| d.state == DriveState::Idle));
    // Parameters (and with them the drive-side limits) are read in the first second.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        bench.pump(Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(5));
    }
    wait(&mut bench, "drive-side limits within the project's", &|b| {
        b.drives.iter().all(|d| d.envelope_violation().is_none())
    });
    // More rounds for a finer p99: DRIVEBENCH_ESTOP_ROUNDS=100.
    let rounds: usize =
        std::env::var("DRIVEBENCH_ESTOP_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    for round in 0..rounds {
        for d in &mut bench.drives {
            d.send(DriveCommand::SetMode(ControlMode::Speed)).unwrap();
            d.send(DriveCommand::Enable).unwrap();
        }
        wait(&mut bench, "all enabled", &|b| b.drives.iter().all(|d| d.state == DriveState::Enabled));
        for d in &mut bench.drives {
            d.send(DriveCommand::SetSetpoint(ControlMode::Speed, 300.0)).unwrap();
        }
        // Let telemetry and polls run, so the stop meets busy workers.
        let until = Instant::now() + Duration::from_millis(150);
        while Instant::now() < until {
            bench.pump(Duration::from_millis(5));
            std::thread::sleep(Duration::from_millis(2));
        }
        bench.estop_all();
        wait(&mut bench, "every stop out", &|b| b.drives.iter().all(|d| d.estop_latencies_s.len() > round));
        wait(&mut bench, "all stopped", &|b| b.drives.iter().all(|d| d.state == DriveState::Idle));
    }
    let mut all = Vec::new();
    for d in &bench.drives {
        let mut l = d.estop_latencies_s.clone();
        assert_eq!(l.len(), rounds, "{}", d.name());
        l.sort_by(f64::total_cmp);
        let worst = l[l.len() - 1];
        eprintln!(
            "{}: E-STOP out in p50 {:.3} ms, worst {:.3} ms",
            d.name(),
            l[l.len() / 2] * 1e3,
            worst * 1e3
        );
        all.extend(l);
        assert!(worst <= 0.020, "{}: E-STOP took {:.1} ms", d.name(), worst * 1e3);
    }
    all.sort_by(f64::total_cmp);
    eprintln!(
        "all drives, {} stops: p50 {:.3} ms, p99 {:.3} ms, worst {:.3} ms",
        all.len(),
        all[all.len() / 2] * 1e3,
        all[all.len() * 99 / 100] * 1e3,
        all[all.len() - 1] * 1e3
    );
}

/// Pumps `bench` until `cond` holds; fails after `secs` seconds naming what it waited for and
/// every drive's state and last message.
fn wait_until(
    bench: &mut drivebench::bench::Bench,
    what: &str,
    secs: u64,
    cond: &dyn Fn(&drivebench::bench::Bench) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond(bench) {
        let states: Vec<String> = bench
            .drives
            .iter()
            .map(|d| format!("{}: {} {:?}", d.name(), d.state.label(), d.messages.back()))
            .collect();
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {states:?}");
        bench.pump(Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Asks the emulated ODrive at `path` for a property over the port, as a terminal would.
fn odrive_read(path: &str, property: &str) -> String {
    use std::io::{Read, Write};
    let mut port =
        serialport::new(path, 115_200).timeout(Duration::from_millis(100)).open().expect("open the port");
    port.write_all(format!("r {property}\n").as_bytes()).expect("write to the port");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut reply = Vec::new();
    let mut chunk = [0u8; 64];
    while !reply.contains(&b'\n') {
        assert!(
            std::time::Instant::now() < deadline,
            "no reply to `r {property}`: {:?}",
            String::from_utf8_lossy(&reply)
        );
        match port.read(&mut chunk) {
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading the port: {e}"),
        }
    }
    String::from_utf8_lossy(&reply).trim().to_owned()
}

/// The emulated ODrive leaves its watchdog configured (1 s) but off. drivebench arms it on
/// connect, so a host killed outright stops feeding it and the drive stops the motor by itself
/// within the timeout, latching the named trip that the next host reports.
#[test]
fn odrive_watchdog_stops_the_motor_when_the_host_dies() {
    let (out, speeds) = kill_the_host_at_speed("odrive");
    // Another host looks: the watchdog tripped and the motor coasted down.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("WATCHDOG_TIMER_EXPIRED"), "{}", text(&out));
    let m = median(speeds);
    assert!(m.abs() < 600.0, "the motor still turns at {m} rpm 2.5 s after the host died");
}

/// A clean run arms the watchdog while connected and leaves it off again, so a tool that does
/// not feed it finds the drive as it was: nothing trips after drivebench has gone.
#[test]
fn odrive_watchdog_is_disarmed_after_a_clean_run() {
    let emu = Emulator::start("odrive", &[]);
    let logs = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("out.csv");
    let spec = format!("odrive:{}", emu.path);
    let out = Command::new(BIN)
        .env("DRIVEBENCH_LOG_DIR", logs.path())
        .args(["record", "--drive", &spec, "--seconds", "1.5", "--csv", csv_path.to_str().unwrap()])
        .args(["--enable", "--mode", "speed", "--setpoint", "600"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let log = std::fs::read_to_string(logs.path().join("drivebench.log")).expect("the log file");
    assert!(log.contains("watchdog armed: 1.0 s; drivebench feeds it while connected"), "{log}");
    assert_eq!(odrive_read(&emu.path, "axis0.config.enable_watchdog"), "0");
    assert_eq!(odrive_read(&emu.path, "axis0.config.watchdog_timeout"), "1.000000");
    // Longer than the timeout with nobody feeding: nothing trips.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(odrive_read(&emu.path, "axis0.error"), "0");
    assert_eq!(odrive_read(&emu.path, "axis0.current_state"), "1");
}
