//! `drivebench record` end to end: the real binary, real worker threads, the simulated drive.

use std::path::Path;
use std::process::Command;

fn drivebench() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drivebench"));
    // Keep the log of test runs out of the user's home.
    cmd.env("DRIVEBENCH_LOG_DIR", std::env::temp_dir().join("drivebench-test-logs"));
    cmd
}

/// Reads a column of a recorded CSV as (time, value) pairs, skipping blank cells.
fn column(csv_path: &Path, name: &str) -> Vec<(f64, f64)> {
    let mut reader = csv::Reader::from_path(csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col =
        headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {headers:?}"));
    reader
        .records()
        .map(|r| r.unwrap())
        .filter(|r| !r[col].is_empty())
        .map(|r| (r[0].parse().unwrap(), r[col].parse().unwrap()))
        .collect()
}

fn assert_time_ordered(csv_path: &Path) {
    let mut reader = csv::Reader::from_path(csv_path).unwrap();
    let times: Vec<f64> = reader.records().map(|r| r.unwrap()[0].parse().unwrap()).collect();
    assert!(times.len() > 10, "only {} rows", times.len());
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "rows are not in time order");
}

#[test]
fn speed_step_settles_and_current_stays_within_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("out.csv");
    let out = drivebench()
        .args(["record", "--drive", "sim", "--seconds", "2", "--csv"])
        .arg(&csv_path)
        .args(["--enable", "--mode", "speed", "--setpoint", "1000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));

    let speed = column(&csv_path, "drive1.speed_rpm");
    let current = column(&csv_path, "drive1.current_a");
    assert!(speed.len() > 1800, "only {} speed samples in 2 s at 1 kHz", speed.len());
    let t_end = speed.last().unwrap().0;
    let tail: Vec<f64> = speed.iter().filter(|(t, _)| *t > t_end - 0.5).map(|(_, v)| *v).collect();
    let mean = tail.iter().sum::<f64>() / tail.len() as f64;
    assert!((mean - 1000.0).abs() < 20.0, "settled at {mean} rpm, not within 2 % of 1000");
    let peak = current.iter().map(|(_, v)| v.abs()).fold(0.0, f64::max);
    assert!(peak > 1.0, "the step drew no current ({peak} A)");
    // The project limit (8 A) is the hard envelope; the drive's own limit (7.5 A) holds to within
    // the measurement noise.
    assert!(peak <= 8.0, "current reached {peak} A, above the project's 8 A limit");
    assert!(peak <= 7.5 + 0.1, "current reached {peak} A, above the drive's 7.5 A limit plus noise");
    // Time runs forward row by row.
    assert_time_ordered(&csv_path);
}

#[test]
fn two_named_drives_get_their_own_columns() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("two.csv");
    let out = drivebench()
        .args(["record", "--drive", "sim,name=left", "--drive", "sim", "--seconds", "0.5", "--csv"])
        .arg(&csv_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(headers[0], "time_s");
    assert!(headers.contains(&"left.speed_rpm".to_owned()), "{headers:?}");
    assert!(headers.contains(&"drive2.current_a".to_owned()), "{headers:?}");
    assert!(!column(&csv_path, "left.temperature_c").is_empty());
    assert!(!column(&csv_path, "drive2.temperature_c").is_empty());
    // Two drives deliver independently; the rows still run forward in time.
    assert_time_ordered(&csv_path);
}

#[test]
fn the_project_envelope_bounds_the_motor_not_only_the_setpoint() {
    // A project allowing 3 A and 1500 rpm on a drive whose own limits are 7.5 A and 4000 rpm.
    let dir = tempfile::tempdir().unwrap();
    let mut text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("projects/demo.ron")).unwrap();
    text = text.replacen("max_current_a: 8.0", "max_current_a: 3.0", 1).replacen(
        "max_speed_rpm: 4000.0",
        "max_speed_rpm: 1500.0",
        1,
    );
    let project = dir.path().join("tight.ron");
    std::fs::write(&project, text).unwrap();
    let csv_path = dir.path().join("tight.csv");
    let out = drivebench()
        .arg("record")
        .arg(&project)
        .args(["--seconds", "1", "--enable", "--mode", "current", "--setpoint", "2.5", "--csv"])
        .arg(&csv_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    // 2.5 A accelerates the unloaded motor until the drive's (lowered) speed limit holds it.
    let speed = column(&csv_path, "left.speed_rpm");
    let top = speed.iter().map(|(_, v)| *v).fold(f64::MIN, f64::max);
    assert!(top > 1000.0, "the motor never ran ({top} rpm)");
    assert!(top <= 1500.0 + 10.0, "speed reached {top} rpm with a 1500 rpm project limit");
}

#[test]
fn out_of_range_setpoint_is_refused_before_anything_moves() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("refused.csv");
    let out = drivebench()
        .args(["record", "--drive", "sim", "--seconds", "1", "--csv"])
        .arg(&csv_path)
        .args(["--enable", "--mode", "speed", "--setpoint", "90000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("90000") && stderr.contains("outside"), "{stderr}");
}

#[test]
fn broken_project_file_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.ron");
    std::fs::write(&bad, "Project(\n    version: 1,\n    drives: [ 42 ],\n)").unwrap();
    let out = drivebench()
        .arg("record")
        .arg(&bad)
        .args(["--seconds", "1", "--csv"])
        .arg(dir.path().join("x.csv"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.ron:3:"), "{stderr}");
}

#[test]
fn demo_project_records_both_drives() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("demo.csv");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("projects/demo.ron");
    let out = drivebench()
        .arg("record")
        .arg(&demo)
        .args(["--seconds", "1", "--enable", "--mode", "speed", "--setpoint", "500", "--csv"])
        .arg(&csv_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    for name in ["left", "right"] {
        let speed = column(&csv_path, &format!("{name}.speed_rpm"));
        assert!(speed.len() > 800, "{name}: {} samples", speed.len());
        assert!(speed.last().unwrap().1 > 400.0, "{name} did not speed up: {:?}", speed.last());
    }
}

#[test]
fn connection_events_and_refusals_go_to_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = drivebench()
        .env("DRIVEBENCH_LOG_DIR", dir.path())
        .args(["params", "--drive", "sim,name=bench7", "--set", "current_limit_a=500"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an out-of-range write must fail");
    let log = std::fs::read_to_string(dir.path().join("drivebench.log")).unwrap();
    assert!(log.contains("[drivebench] started"), "{log}");
    assert!(log.contains("[bench7]") && log.contains("idle"), "connection events: {log}");
    assert!(
        log.lines().any(|l| l.contains("[bench7]") && l.contains("current_limit_a")),
        "the refusal: {log}"
    );
}
