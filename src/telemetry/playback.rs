//! Opening a recording again: a CSV in the layout `drivebench record` and the Record button
//! write (`time_s`, then `DRIVE.SIGNAL` columns) becomes one [`DriveTelemetry`] per drive,
//! browsed in the plots like live data. Units are not in the file; they follow from the
//! signal names (`speed_rpm` → rpm, `current_a` → A, …).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::drive::{Sample, SignalSpec};
use crate::project::History;

use super::DriveTelemetry;

#[derive(Debug, Error)]
pub enum PlaybackError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a drivebench recording: {why}")]
    Layout { path: PathBuf, why: String },
    #[error("{path}, line {line}: {why}")]
    Row { path: PathBuf, line: u64, why: String },
}

/// One drive of a recording.
#[derive(Debug)]
pub struct RecordedTelemetry {
    pub drive: String,
    pub telemetry: DriveTelemetry,
}

/// The unit a canonical signal name carries in its suffix.
pub fn unit_of(signal: &str) -> &'static str {
    const SUFFIXES: [(&str, &str); 10] = [
        ("_rpm", "rpm"),
        ("_rev", "rev"),
        ("_a", "A"),
        ("_v", "V"),
        ("_c", "°C"),
        ("_w", "W"),
        ("_hz", "Hz"),
        ("_rad", "rad"),
        ("_nm", "N·m"),
        ("_s", "s"),
    ];
    SUFFIXES.iter().find(|(suffix, _)| signal.ends_with(suffix)).map_or("", |(_, unit)| unit)
}

/// Reads a whole recording. Rows are sorted per signal by time (a stalled drive's late rows
/// land where they belong); each drive's store holds exactly its samples.
pub fn load_recording(path: &Path) -> Result<Vec<RecordedTelemetry>, PlaybackError> {
    let layout = |why: String| PlaybackError::Layout { path: path.to_owned(), why };
    let mut reader =
        csv::ReaderBuilder::new().flexible(false).from_path(path).map_err(|e| csv_error(path, e))?;
    let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    if headers.get(0) != Some("time_s") {
        return Err(layout("the first column must be `time_s`".into()));
    }
    // Column → (drive index, signal index).
    let mut drives: Vec<(String, Vec<SignalSpec>)> = Vec::new();
    let mut columns = Vec::new();
    for (i, h) in headers.iter().enumerate().skip(1) {
        let Some((drive, signal)) = h.rsplit_once('.').filter(|(d, s)| !d.is_empty() && !s.is_empty()) else {
            return Err(layout(format!("column {} `{h}` is not DRIVE.SIGNAL", i + 1)));
        };
        let di = match drives.iter().position(|(d, _)| d == drive) {
            Some(di) => di,
            None => {
                drives.push((drive.to_owned(), Vec::new()));
                drives.len() - 1
            }
        };
        if drives[di].1.iter().any(|s| s.name == signal) {
            return Err(layout(format!("column `{h}` appears twice")));
        }
        drives[di].1.push(SignalSpec::new(signal, unit_of(signal)));
        columns.push((di, drives[di].1.len() - 1));
    }
    if drives.is_empty() {
        return Err(layout("no DRIVE.SIGNAL columns".into()));
    }
    let mut data: BTreeMap<(usize, usize), Vec<(f64, f64)>> = BTreeMap::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(|e| csv_error(path, e))? {
        let line = record.position().map_or(0, |p| p.line());
        let row_error = |why: String| PlaybackError::Row { path: path.to_owned(), line, why };
        let t_s: f64 = record[0]
            .trim()
            .parse()
            .map_err(|_| row_error(format!("time `{}` is not a number", &record[0])))?;
        if !t_s.is_finite() {
            return Err(row_error(format!("time `{}` is not finite", &record[0])));
        }
        for (cell, &key) in record.iter().skip(1).zip(&columns) {
            let cell = cell.trim();
            if cell.is_empty() {
                continue;
            }
            let value: f64 = cell.parse().map_err(|_| row_error(format!("`{cell}` is not a number")))?;
            data.entry(key).or_default().push((t_s, value));
        }
    }
    let mut out = Vec::new();
    for (di, (name, signals)) in drives.into_iter().enumerate() {
        let longest = (0..signals.len()).map(|si| data.get(&(di, si)).map_or(0, Vec::len)).max().unwrap_or(0);
        let mut telemetry = DriveTelemetry::new(longest.max(History::MIN_SAMPLES));
        telemetry.set_signals(&signals);
        for si in 0..signals.len() {
            let Some(mut samples) = data.remove(&(di, si)) else { continue };
            samples.sort_by(|a, b| a.0.total_cmp(&b.0));
            let batch: Vec<Sample> =
                samples.into_iter().map(|(t_s, value)| Sample { t_s, signal: si as u16, value }).collect();
            telemetry.push(&batch);
        }
        out.push(RecordedTelemetry { drive: name, telemetry });
    }
    Ok(out)
}

fn csv_error(path: &Path, e: csv::Error) -> PlaybackError {
    let text = e.to_string();
    if let Some(line) = e.position().map(|p| p.line()) {
        return PlaybackError::Row { path: path.to_owned(), line, why: text };
    }
    match e.into_kind() {
        csv::ErrorKind::Io(source) => PlaybackError::Read { path: path.to_owned(), source },
        _ => PlaybackError::Layout { path: path.to_owned(), why: text },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::CsvRecorder;

    #[test]
    fn a_recording_reads_back_sample_for_sample() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.csv");
        let drives = vec![
            ("left".to_owned(), vec![SignalSpec::new("speed_rpm", "rpm"), SignalSpec::new("current_a", "A")]),
            ("my.drive".to_owned(), vec![SignalSpec::new("temperature_c", "°C")]),
        ];
        let mut rec = CsvRecorder::new(std::fs::File::create(&path).unwrap(), &drives);
        for i in 0..500u32 {
            let t = i as f64 * 1e-3;
            rec.add(
                "left",
                &[Sample { t_s: t, signal: 0, value: i as f64 }, Sample { t_s: t, signal: 1, value: -0.5 }],
            )
            .unwrap();
            if i % 10 == 0 {
                rec.add("my.drive", &[Sample { t_s: t + 2e-4, signal: 0, value: 40.0 + i as f64 / 100.0 }])
                    .unwrap();
            }
        }
        rec.finish().unwrap();
        let loaded = load_recording(&path).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].drive, "left");
        assert_eq!(loaded[1].drive, "my.drive");
        let left = &loaded[0].telemetry;
        assert_eq!(left.unit("speed_rpm"), Some("rpm"));
        assert_eq!(left.unit("current_a"), Some("A"));
        let speed = left.series("speed_rpm").unwrap();
        assert_eq!(speed.len(), 500);
        assert_eq!(speed.last(), Some((0.499, 499.0)));
        let temp = loaded[1].telemetry.series("temperature_c").unwrap();
        assert_eq!(temp.len(), 50);
        assert_eq!(loaded[1].telemetry.unit("temperature_c"), Some("°C"));
        assert!((temp.first_t().unwrap() - 2e-4).abs() < 1e-9);
    }

    #[test]
    fn broken_recordings_are_refused_with_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("t,a.x\n0,1\n", "first column"),
            ("time_s,ax\n0,1\n", "column 2 `ax`"),
            ("time_s,a.x,a.x\n0,1,2\n", "appears twice"),
            ("time_s,a.x\n0,1\n0.1,oops\n", "line 3"),
            ("time_s,a.x\n0,1\nnan,1\n", "line 3"),
            ("time_s,a.x\n0,1\n0.1,1,2\n", "line 3"),
        ];
        for (i, (text, expect)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("{i}.csv"));
            std::fs::write(&path, text).unwrap();
            let err = load_recording(&path).unwrap_err().to_string();
            assert!(err.contains(expect), "case {i}: {err}");
        }
        let err = load_recording(&dir.path().join("missing.csv")).unwrap_err().to_string();
        assert!(err.contains("missing.csv"), "{err}");
    }

    #[test]
    fn late_rows_are_put_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("late.csv");
        std::fs::write(&path, "time_s,a.speed_rpm\n0.0,1\n0.2,3\n0.1,2\n").unwrap();
        let loaded = load_recording(&path).unwrap();
        let s = loaded[0].telemetry.series("speed_rpm").unwrap();
        let points: Vec<(f64, f64)> = s.samples_in(0.0, 1.0).collect();
        assert_eq!(points, vec![(0.0, 1.0), (0.1, 2.0), (0.2, 3.0)]);
    }
}
