//! Full-rate recording on its own thread. Every drive's worker offers each sample batch to the
//! bench's [`RecordHub`]; while a [`Recording`] runs, the hub hands the batches to the
//! recorder thread over a deep channel, and that thread writes them through [`CsvRecorder`]
//! (rows in time order across drives) and flushes the file regularly. Nothing here depends on
//! the UI painting: a minimised window or a slow frame cannot cost a sample. A batch that does
//! not fit the channel (the disk stalled for many seconds) is counted and reported as lost.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};

use crate::drive::{Sample, SignalSpec};

use super::{CsvRecorder, RecordError};

/// Sample batches the recorder thread may fall behind by (seconds of a stalled disk at
/// thousands of batches per second).
pub const RECORD_CHANNEL_BATCHES: usize = 1 << 16;
/// How often the file is flushed to the OS.
const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// One batch of one drive, as the recorder receives it.
struct Batch {
    drive_id: u64,
    samples: Vec<Sample>,
}

struct Tap {
    tx: Sender<Batch>,
    stats: Arc<RecordStats>,
}

/// Where workers offer their samples; a no-op unless a recording runs.
#[derive(Default)]
pub struct RecordHub {
    tap: Mutex<Option<Tap>>,
}

impl RecordHub {
    pub fn new() -> Arc<Self> {
        Arc::new(RecordHub::default())
    }

    /// Called by a drive's worker for every batch, on the worker thread. Never blocks on
    /// the disk: a full channel loses the batch and counts it.
    pub fn offer(&self, drive_id: u64, samples: &[Sample]) {
        let guard = self.tap.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tap) = guard.as_ref() else { return };
        let n = samples.len() as u64;
        match tap.tx.try_send(Batch { drive_id, samples: samples.to_vec() }) {
            Ok(()) => {
                tap.stats.offered.fetch_add(n, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                tap.stats.lost.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    pub fn is_recording(&self) -> bool {
        self.tap.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn set(&self, tap: Option<Tap>) {
        *self.tap.lock().unwrap_or_else(|p| p.into_inner()) = tap;
    }
}

/// Counters of a running recording, updated by the workers and the recorder thread.
#[derive(Debug, Default)]
pub struct RecordStats {
    /// Samples handed to the recorder thread.
    pub offered: AtomicU64,
    /// Samples that could not be handed over (channel full): an error the user sees.
    pub lost: AtomicU64,
    /// Samples written into rows.
    pub written: AtomicU64,
    /// Bytes handed to the operating system.
    pub bytes: AtomicU64,
    /// Rows written.
    pub rows: AtomicU64,
    /// Samples of signals a drive announced after the recording started (no column).
    pub unrecorded: AtomicU64,
    error: Mutex<Option<String>>,
}

impl RecordStats {
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A drive taking part in a recording: its bench id, column prefix and signals.
#[derive(Debug, Clone)]
pub struct RecordedDrive {
    pub id: u64,
    pub name: String,
    pub signals: Vec<SignalSpec>,
}

/// What a finished recording holds.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSummary {
    pub path: PathBuf,
    pub rows: u64,
    /// Rows per drive, in the order the drives were given.
    pub rows_per_drive: Vec<(String, u64)>,
    pub samples: u64,
    pub lost: u64,
    pub unrecorded: u64,
    pub late_rows: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// A file writer that counts the bytes it hands on.
struct Counting<W> {
    inner: W,
    stats: Arc<RecordStats>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

type Thread = JoinHandle<(Result<(), RecordError>, Vec<(String, u64)>, u64)>;

/// A running recording. [`Recording::stop`] ends it and returns what was written; dropping
/// it also stops it (and the thread finishes the file).
pub struct Recording {
    hub: Arc<RecordHub>,
    path: PathBuf,
    started: Instant,
    stats: Arc<RecordStats>,
    thread: Option<Thread>,
}

impl Recording {
    /// Creates `path` and starts recording the given drives' samples from now on.
    pub fn start(
        hub: &Arc<RecordHub>,
        path: &Path,
        drives: Vec<RecordedDrive>,
    ) -> Result<Recording, RecordError> {
        let file =
            File::create(path).map_err(|source| RecordError::Create { path: path.to_owned(), source })?;
        let stats = Arc::new(RecordStats::default());
        let (tx, rx) = bounded(RECORD_CHANNEL_BATCHES);
        let writer = BufWriter::with_capacity(1 << 16, Counting { inner: file, stats: stats.clone() });
        let columns: Vec<(String, Vec<SignalSpec>)> =
            drives.iter().map(|d| (d.name.clone(), d.signals.clone())).collect();
        let recorder = CsvRecorder::new(writer, &columns);
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || record_loop(rx, recorder, drives, thread_stats))
            .map_err(RecordError::Io)?;
        hub.set(Some(Tap { tx, stats: stats.clone() }));
        Ok(Recording {
            hub: hub.clone(),
            path: path.to_owned(),
            started: Instant::now(),
            stats,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn stats(&self) -> &RecordStats {
        &self.stats
    }

    /// True if the recorder thread ended early (a write error).
    pub fn failed(&self) -> bool {
        self.stats.error().is_some()
    }

    /// Stops taking samples, writes everything received, closes the file.
    pub fn stop(mut self) -> Result<RecordSummary, RecordError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<RecordSummary, RecordError> {
        // Closing the channel (the hub drops its sender) lets the thread drain and finish.
        self.hub.set(None);
        let seconds = self.started.elapsed().as_secs_f64();
        let Some(thread) = self.thread.take() else {
            return Err(RecordError::Stopped);
        };
        let (result, rows_per_drive, late_rows) = thread.join().map_err(|_| RecordError::Stopped)?;
        result?;
        let s = &self.stats;
        Ok(RecordSummary {
            path: self.path.clone(),
            rows: s.rows.load(Ordering::Relaxed),
            rows_per_drive,
            samples: s.written.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
            unrecorded: s.unrecorded.load(Ordering::Relaxed),
            late_rows,
            bytes: s.bytes.load(Ordering::Relaxed),
            seconds,
        })
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.finish();
        }
    }
}

fn record_loop<W: Write>(
    rx: Receiver<Batch>,
    mut recorder: CsvRecorder<W>,
    drives: Vec<RecordedDrive>,
    stats: Arc<RecordStats>,
) -> (Result<(), RecordError>, Vec<(String, u64)>, u64) {
    let mut last_flush = Instant::now();
    let result = (|| -> Result<(), RecordError> {
        loop {
            match rx.recv_timeout(FLUSH_INTERVAL) {
                Ok(batch) => {
                    let Some(d) = drives.iter().find(|d| d.id == batch.drive_id) else {
                        // A drive added after the start has no columns.
                        stats.unrecorded.fetch_add(batch.samples.len() as u64, Ordering::Relaxed);
                        continue;
                    };
                    let n = d.signals.len();
                    let (known, unknown): (Vec<Sample>, Vec<Sample>) =
                        batch.samples.into_iter().partition(|s| (s.signal as usize) < n);
                    stats.unrecorded.fetch_add(unknown.len() as u64, Ordering::Relaxed);
                    recorder.add(&d.name, &known)?;
                    stats.written.fetch_add(known.len() as u64, Ordering::Relaxed);
                }
                Err(RecvTimeoutError::Timeout) => recorder.add_nothing()?,
                Err(RecvTimeoutError::Disconnected) => break,
            }
            stats.rows.store(recorder.rows_written(), Ordering::Relaxed);
            if last_flush.elapsed() >= FLUSH_INTERVAL {
                recorder.flush()?;
                last_flush = Instant::now();
            }
        }
        recorder.write_all()?;
        stats.rows.store(recorder.rows_written(), Ordering::Relaxed);
        recorder.flush()
    })();
    if let Err(e) = &result {
        *stats.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }
    let rows = drives.iter().map(|d| (d.name.clone(), recorder.rows_of(&d.name).unwrap_or(0))).collect();
    let late = recorder.late_rows();
    (result, rows, late)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(t_s: f64, n: u16) -> Vec<Sample> {
        (0..n).map(|i| Sample { t_s, signal: i, value: t_s * 10.0 + i as f64 }).collect()
    }

    #[test]
    fn a_recording_writes_every_offered_sample_and_nothing_before_or_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.csv");
        let hub = RecordHub::new();
        hub.offer(1, &frame(0.0, 2)); // before the start: not recorded
        let drives = vec![
            RecordedDrive {
                id: 1,
                name: "a".into(),
                signals: vec![SignalSpec::new("x", ""), SignalSpec::new("y", "")],
            },
            RecordedDrive { id: 2, name: "b".into(), signals: vec![SignalSpec::new("z", "")] },
        ];
        let rec = Recording::start(&hub, &path, drives).unwrap();
        assert!(hub.is_recording());
        for i in 1..=1000 {
            hub.offer(1, &frame(i as f64 * 1e-3, 2));
            hub.offer(2, &frame(i as f64 * 1e-3 + 5e-4, 1));
        }
        hub.offer(3, &frame(0.5, 1)); // an unknown drive
        hub.offer(2, &[Sample { t_s: 2.0, signal: 4, value: 1.0 }]); // a signal without a column
        let summary = rec.stop().unwrap();
        assert!(!hub.is_recording());
        hub.offer(1, &frame(3.0, 2)); // after the stop: not recorded
        assert_eq!(summary.samples, 3000);
        assert_eq!(summary.lost, 0);
        assert_eq!(summary.unrecorded, 2);
        assert_eq!(summary.rows, 2000);
        assert_eq!(summary.rows_per_drive, vec![("a".to_owned(), 1000), ("b".to_owned(), 1000)]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(summary.bytes, text.len() as u64);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "time_s,a.x,a.y,b.z");
        assert_eq!(lines.len(), 2001);
        assert_eq!(lines[1], "0.001000,0.01,1.01,");
        assert_eq!(lines[2], "0.001500,,,0.015");
    }

    #[test]
    fn a_file_that_cannot_be_created_is_an_error_naming_it() {
        let hub = RecordHub::new();
        let err = Recording::start(&hub, Path::new("/nonexistent-dir/x.csv"), Vec::new()).err().unwrap();
        assert!(err.to_string().contains("/nonexistent-dir/x.csv"), "{err}");
        assert!(!hub.is_recording());
    }
}
