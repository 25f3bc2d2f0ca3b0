//! CSV recording of every sample of every drive: `time_s`, then one `DRIVE.SIGNAL` column
//! per signal, rows in time order, blank cells where a drive has no sample at that time.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::drive::{Sample, SignalSpec};

#[derive(Debug, Error)]
pub enum RecordError {
    #[error("cannot write the recording: {0}")]
    Csv(#[from] csv::Error),
    #[error("cannot write the recording: {0}")]
    Io(#[from] std::io::Error),
    #[error("drive `{0}` is not part of this recording")]
    UnknownDrive(String),
    #[error("cannot create the recording {path}: {source}")]
    Create { path: std::path::PathBuf, source: std::io::Error },
    #[error("the recorder stopped unexpectedly")]
    Stopped,
    #[error("a recording is already running")]
    AlreadyRecording,
}

/// Orders f64 times in a map key (times are finite and ≥ 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct TimeKey(u64);

impl TimeKey {
    fn new(t_s: f64) -> Self {
        // For non-negative finite floats the bit pattern orders like the value.
        TimeKey(t_s.max(0.0).to_bits())
    }
    fn seconds(self) -> f64 {
        f64::from_bits(self.0)
    }
}

struct DriveColumns {
    name: String,
    /// Column offset of signal i (after `time_s`).
    first_column: usize,
    signals: Vec<SignalSpec>,
    /// Newest sample time seen; rows older than every drive's newest time are final.
    newest_s: f64,
    /// When this drive last delivered data (wall clock).
    heard: Instant,
    rows: u64,
}

/// Writes rows in time order. Drives deliver batches independently, so rows wait in a small
/// reorder buffer until every drive has reported past their time.
pub struct CsvRecorder<W: Write> {
    writer: csv::Writer<W>,
    drives: Vec<DriveColumns>,
    width: usize,
    /// Rows waiting for the watermark, by time, drive and frame within that time.
    pending: BTreeMap<(TimeKey, usize, u32), Vec<Option<f64>>>,
    header_written: bool,
    rows_written: u64,
    /// A drive silent for this long (wall clock) no longer holds back the others.
    stall: Duration,
    /// Time of the newest row written.
    last_written_s: f64,
    /// Rows that arrived after newer rows had been written (a drive that stalled, then
    /// delivered its backlog): written anyway, out of order, and counted.
    late_rows: u64,
}

impl<W: Write> CsvRecorder<W> {
    /// `drives` gives each drive's name and signal list, which fix the columns.
    pub fn new(out: W, drives: &[(String, Vec<SignalSpec>)]) -> Self {
        let mut columns = Vec::new();
        let mut width = 0;
        for (name, signals) in drives {
            columns.push(DriveColumns {
                name: name.clone(),
                first_column: width,
                signals: signals.clone(),
                newest_s: f64::NEG_INFINITY,
                heard: Instant::now(),
                rows: 0,
            });
            width += signals.len();
        }
        CsvRecorder {
            writer: csv::Writer::from_writer(out),
            drives: columns,
            width,
            pending: BTreeMap::new(),
            header_written: false,
            rows_written: 0,
            stall: Duration::from_secs(2),
            last_written_s: f64::NEG_INFINITY,
            late_rows: 0,
        }
    }

    pub fn column_names(&self) -> Vec<String> {
        let mut names = vec!["time_s".to_owned()];
        for d in &self.drives {
            names.extend(d.signals.iter().map(|s| format!("{}.{}", d.name, s.name)));
        }
        names
    }

    /// Rows written so far per drive name.
    pub fn rows_of(&self, drive: &str) -> Option<u64> {
        self.drives.iter().find(|d| d.name == drive).map(|d| d.rows)
    }

    pub fn rows_written(&self) -> u64 {
        self.rows_written
    }

    /// Rows written out of time order because their drive had stalled.
    pub fn late_rows(&self) -> u64 {
        self.late_rows
    }

    /// Writes every buffered row now, whatever the drives may still send.
    pub fn write_all(&mut self) -> Result<(), RecordError> {
        self.flush_ready(true)
    }

    #[cfg(test)]
    fn set_stall(&mut self, stall: Duration) {
        self.stall = stall;
    }

    /// Adds a batch from one drive. Samples with the same time form one row, unless a signal
    /// repeats: then it is a further frame with that time (several lines that arrived in
    /// one read share a timestamp) and gets a row of its own, so no value overwrites another.
    pub fn add(&mut self, drive: &str, samples: &[Sample]) -> Result<(), RecordError> {
        let index = self
            .drives
            .iter()
            .position(|d| d.name == drive)
            .ok_or_else(|| RecordError::UnknownDrive(drive.into()))?;
        let n_signals = self.drives[index].signals.len();
        for s in samples {
            if !s.t_s.is_finite() || s.signal as usize >= n_signals {
                continue;
            }
            let key = TimeKey::new(s.t_s);
            let mut frame = 0u32;
            loop {
                let row = self.pending.entry((key, index, frame)).or_insert_with(|| vec![None; n_signals]);
                let cell = &mut row[s.signal as usize];
                if cell.is_none() {
                    *cell = Some(s.value);
                    break;
                }
                frame += 1;
            }
            let d = &mut self.drives[index];
            if s.t_s > d.newest_s {
                d.newest_s = s.t_s;
            }
        }
        if !samples.is_empty() {
            self.drives[index].heard = Instant::now();
        }
        self.flush_ready(false)
    }

    /// Writes what has become final without new data (a drive that fell silent stops holding
    /// back the others after a while).
    pub fn add_nothing(&mut self) -> Result<(), RecordError> {
        self.flush_ready(false)
    }

    /// Writes every pending row that no drive can still precede.
    fn flush_ready(&mut self, all: bool) -> Result<(), RecordError> {
        let stall = self.stall;
        let watermark = self
            .drives
            .iter()
            .filter(|d| d.heard.elapsed() < stall)
            .map(|d| d.newest_s)
            .fold(f64::INFINITY, f64::min);
        self.write_header()?;
        let mut line = vec![String::new(); self.width + 1];
        while let Some(entry) = self.pending.first_entry() {
            let (key, index, _) = *entry.key();
            if !all && key.seconds() >= watermark {
                break;
            }
            let values = entry.remove();
            if key.seconds() < self.last_written_s {
                self.late_rows += 1;
            }
            self.last_written_s = self.last_written_s.max(key.seconds());
            line.iter_mut().for_each(String::clear);
            line[0] = format!("{:.6}", key.seconds());
            let first = self.drives[index].first_column + 1;
            for (i, v) in values.iter().enumerate() {
                if let Some(v) = v {
                    line[first + i] = v.to_string();
                }
            }
            self.writer.write_record(&line)?;
            self.drives[index].rows += 1;
            self.rows_written += 1;
        }
        Ok(())
    }

    fn write_header(&mut self) -> Result<(), RecordError> {
        if !self.header_written {
            self.writer.write_record(self.column_names())?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Writes what is buffered to the file (rows still reordering stay buffered).
    pub fn flush(&mut self) -> Result<(), RecordError> {
        self.writer.flush()?;
        Ok(())
    }

    /// Writes every remaining row and flushes.
    pub fn finish(mut self) -> Result<W, RecordError> {
        self.flush_ready(true)?;
        self.writer.flush()?;
        self.writer.into_inner().map_err(|e| RecordError::Io(e.into_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(names: &[&str]) -> Vec<SignalSpec> {
        names.iter().map(|n| SignalSpec::new(n, "")).collect()
    }

    fn frame(t_s: f64, values: &[f64]) -> Vec<Sample> {
        values.iter().enumerate().map(|(i, &value)| Sample { t_s, signal: i as u16, value }).collect()
    }

    #[test]
    fn rows_are_time_ordered_across_drives_with_blanks() {
        let drives = vec![("a".to_owned(), specs(&["x", "y"])), ("b".to_owned(), specs(&["z"]))];
        let mut rec = CsvRecorder::new(Vec::new(), &drives);
        rec.add("a", &[frame(0.0, &[1.0, 2.0]), frame(0.002, &[3.0, 4.0])].concat()).unwrap();
        rec.add("b", &frame(0.001, &[9.5])).unwrap();
        rec.add("b", &frame(0.003, &[9.0])).unwrap();
        // Rows older than every drive's newest sample are final; the rest wait for reordering.
        assert_eq!(rec.rows_of("a"), Some(1));
        assert_eq!(rec.rows_of("b"), Some(1));
        assert_eq!(rec.late_rows(), 0);
        let text = String::from_utf8(rec.finish().unwrap()).unwrap();
        assert_eq!(text, "time_s,a.x,a.y,b.z\n0.000000,1,2,\n0.001000,,,9.5\n0.002000,3,4,\n0.003000,,,9\n");
    }

    #[test]
    fn frames_that_share_a_timestamp_each_get_a_row() {
        // Two lines read in one chunk carry the same time: both must be written.
        let drives = vec![("a".to_owned(), specs(&["x", "y"])), ("b".to_owned(), specs(&["z"]))];
        let mut rec = CsvRecorder::new(Vec::new(), &drives);
        rec.add("a", &[frame(0.5, &[1.0, 2.0]), frame(0.5, &[3.0, 4.0])].concat()).unwrap();
        rec.add("b", &frame(0.5, &[9.0])).unwrap();
        rec.add("a", &frame(0.5, &[5.0])).unwrap();
        let text = String::from_utf8(rec.finish().unwrap()).unwrap();
        assert_eq!(text, "time_s,a.x,a.y,b.z\n0.500000,1,2,\n0.500000,3,4,\n0.500000,5,,\n0.500000,,,9\n");
    }

    #[test]
    fn nothing_is_written_before_every_drive_has_reported_past_it() {
        let drives = vec![("a".to_owned(), specs(&["x"])), ("b".to_owned(), specs(&["z"]))];
        let mut rec = CsvRecorder::new(Vec::new(), &drives);
        for i in 0..100 {
            rec.add("a", &frame(i as f64 * 0.001, &[i as f64])).unwrap();
        }
        assert_eq!(rec.rows_written(), 0, "drive b has not reported yet: a's rows must wait");
        rec.add("b", &frame(0.05, &[1.0])).unwrap();
        assert_eq!(rec.rows_of("a"), Some(50));
    }

    #[test]
    fn a_silent_drive_stops_holding_back_the_others_and_its_backlog_is_kept() {
        let drives = vec![("a".to_owned(), specs(&["x"])), ("b".to_owned(), specs(&["z"]))];
        let mut rec = CsvRecorder::new(Vec::new(), &drives);
        rec.set_stall(Duration::from_millis(30));
        rec.add("b", &frame(0.0, &[1.0])).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        for i in 0..200 {
            rec.add("a", &frame(i as f64 * 0.001, &[i as f64])).unwrap();
        }
        assert!(rec.rows_of("a").unwrap() > 100, "a stalled drive must not hold back the others");
        // The stalled drive's backlog arrives: nothing is lost, the late rows are counted.
        rec.add("b", &frame(0.010, &[2.0])).unwrap();
        rec.write_all().unwrap();
        assert_eq!(rec.rows_of("b"), Some(2));
        assert_eq!(rec.late_rows(), 1);
        assert!(rec.add("c", &frame(0.0, &[1.0])).is_err());
    }
}
