//! `drivebench bench`: the end-to-end load test. It starts N emulated drives (Serial Plotter
//! sketches at a given line rate, each line numbered by a `seq` counter) on pseudo-terminals,
//! opens the real window on a bench of those drives, records everything for a while —
//! optionally minimising the window part of the time — and then proves from the counters that
//! no line was lost, both in the live store and in the CSV. It also measures the UI thread's
//! CPU time per frame and the process CPU use.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::link::SerialSettings;
use crate::project::{Connection, DriveConfig, PlotConfig, Project, SerialConnection};
use crate::protocol::Protocol;

/// A drive still reconnecting at the end of a soak is fine if its link went this recently
/// (the longest reconnection pause is 5 s).
pub const RECONNECT_GRACE_S: f64 = 10.0;

/// The counter label the emulated sketches print.
pub const SEQ: &str = "seq";

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub drives: usize,
    pub rate_hz: f64,
    pub seconds: f64,
    /// Where the recording goes.
    pub csv: PathBuf,
    /// Windows of the run (seconds after the recording started) with the window minimised.
    pub minimized: Vec<(f64, f64)>,
    /// Write the recording (a one-hour soak would fill gigabytes).
    pub record: bool,
    /// Soak: kill one emulator (round robin) this often and start it again 2 s later.
    pub disconnect_every_s: Option<f64>,
    /// Samples kept per signal (`None`: the whole run).
    pub history: Option<usize>,
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot start the emulator `{exe}`: {source}")]
    Spawn { exe: PathBuf, source: std::io::Error },
    #[error("the emulator did not print its device path: {0}")]
    NoPath(String),
    #[error("cannot read the recording {path}: {why}")]
    Csv { path: PathBuf, why: String },
}

/// Emulator processes; killed when dropped.
pub struct Emulators {
    exe: PathBuf,
    rate_hz: f64,
    children: Vec<Option<Child>>,
    /// Where each drive is found: a stable symbolic link to its pseudo-terminal.
    pub paths: Vec<String>,
    /// Emulators killed and started again.
    pub restarts: u64,
}

impl Emulators {
    /// Starts `n` `drivebench emulate --protocol plotter --counter` processes of `exe`, each
    /// reachable at `dir/sketchN` (a link that survives a restart).
    pub fn spawn(exe: &Path, n: usize, rate_hz: f64, dir: &Path) -> Result<Emulators, LoadError> {
        let mut emulators =
            Emulators { exe: exe.to_owned(), rate_hz, children: Vec::new(), paths: Vec::new(), restarts: 0 };
        for i in 0..n {
            let link = dir.join(format!("sketch{}", i + 1));
            emulators.paths.push(link.to_string_lossy().into_owned());
            emulators.children.push(None);
            emulators.start(i)?;
        }
        Ok(emulators)
    }

    fn start(&mut self, i: usize) -> Result<(), LoadError> {
        let mut child = Process::new(&self.exe)
            .args(["emulate", "--protocol", "plotter", "--counter", "--rate"])
            .arg(self.rate_hz.to_string())
            .args(["--seed", &(i + 1).to_string(), "--link", &self.paths[i]])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LoadError::Spawn { exe: self.exe.clone(), source })?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        self.children[i] = Some(child);
        if line.trim().is_empty() {
            return Err(LoadError::NoPath(format!("emulator {} printed nothing", i + 1)));
        }
        Ok(())
    }

    /// Kills emulator `i` outright (a pulled cable): its device node (the link) goes too, as
    /// a USB adapter's does.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children.get_mut(i).and_then(Option::take) {
            let _ = c.kill();
            let _ = c.wait();
            let _ = std::fs::remove_file(&self.paths[i]);
        }
    }

    /// Starts emulator `i` again at the same place (the cable plugged back in).
    pub fn restart(&mut self, i: usize) -> Result<(), LoadError> {
        self.kill(i);
        self.restarts += 1;
        self.start(i)
    }

    /// Stops every emulator (SIGTERM) and returns the bytes each dropped because the host did
    /// not read them in time (`None` where it did not say).
    pub fn finish(mut self) -> Vec<Option<u64>> {
        let mut dropped = Vec::new();
        for c in self.children.iter_mut() {
            let Some(c) = c else {
                dropped.push(None);
                continue;
            };
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let mut text = String::new();
            if let Some(mut err) = c.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut err, &mut text);
            }
            let _ = c.wait();
            let bytes = text.lines().rev().find_map(|l| {
                l.split_once("stopped; ").and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
            });
            dropped.push(bytes);
        }
        self.children.clear();
        dropped
    }
}

impl Drop for Emulators {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A bench of Serial Plotter drives on `paths`, with a history long enough for the whole run.
pub fn project_for(paths: &[String], opts: &LoadOptions) -> Project {
    let mut project = Project::default();
    for (i, path) in paths.iter().enumerate() {
        project.drives.push(DriveConfig {
            name: format!("sketch{}", i + 1),
            connection: Connection::Serial(SerialConnection {
                link: SerialSettings::new(path, 921_600),
                protocol: Protocol::Plotter,
            }),
            ..DriveConfig::default()
        });
    }
    let needed = ((opts.seconds + 30.0) * opts.rate_hz) as usize;
    project.history.samples_per_signal = match opts.history {
        Some(samples) => samples,
        None => project.history.samples_per_signal.max(needed),
    };
    project.plot.plots.push(PlotConfig {
        title: "Temperature".into(),
        unit: "°C".into(),
        signals: vec!["temperature_c".into()],
        ..PlotConfig::default()
    });
    project.plot.hidden = paths.iter().enumerate().map(|(i, _)| format!("sketch{}.{SEQ}", i + 1)).collect();
    project
}

/// Counts lines by their `seq` numbers: a number missing between two received ones is a lost
/// line; a number at or below the previous one is a restarted emulator (a new count begins,
/// and what it had not sent is not a loss).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LineCounter {
    pub lines: u64,
    pub lost: u64,
    pub restarts: u64,
    last: Option<f64>,
}

impl LineCounter {
    pub fn add(&mut self, seq: f64) {
        if seq.is_nan() {
            // The gap marker of a lost link.
            return;
        }
        match self.last {
            Some(prev) if seq > prev + 1.0 => self.lost += (seq - prev - 1.0) as u64,
            Some(prev) if seq <= prev => self.restarts += 1,
            _ => {}
        }
        self.lines += 1;
        self.last = Some(seq);
    }
}

/// Lines and lost lines of a run of counter values.
pub fn counter_gaps(seqs: impl IntoIterator<Item = f64>) -> (u64, u64) {
    let mut c = LineCounter::default();
    seqs.into_iter().for_each(|s| c.add(s));
    (c.lines, c.lost)
}

/// Follows one drive's `seq` series as it grows, so that nothing has to be kept for the end
/// (a soak's history is shorter than the run).
#[derive(Debug, Clone, Default)]
pub struct SeqFollower {
    pub counter: LineCounter,
    /// Time of the newest counted sample and how many samples with that time were counted.
    last_t: f64,
    at_last_t: usize,
}

impl SeqFollower {
    pub fn new() -> Self {
        SeqFollower { counter: LineCounter::default(), last_t: f64::NEG_INFINITY, at_last_t: 0 }
    }

    /// Counts the samples of `series` not seen yet.
    pub fn follow(&mut self, series: &crate::telemetry::Series) {
        let mut skip = self.at_last_t;
        for (t, v) in series.samples_in(self.last_t, f64::INFINITY) {
            if t == self.last_t && skip > 0 {
                skip -= 1;
                continue;
            }
            if t == self.last_t {
                self.at_last_t += 1;
            } else {
                self.last_t = t;
                self.at_last_t = 1;
            }
            self.counter.add(v);
        }
    }
}

/// Per-drive line counts and gaps in a recording's `DRIVE.seq` columns.
pub fn csv_counters(path: &Path) -> Result<Vec<(String, u64, u64)>, LoadError> {
    let err = |why: String| LoadError::Csv { path: path.to_owned(), why };
    let mut reader = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let headers = reader.headers().map_err(|e| err(e.to_string()))?.clone();
    let columns: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_suffix(&format!(".{SEQ}")).map(|d| (i, d.to_owned())))
        .collect();
    let mut seqs: Vec<Vec<f64>> = vec![Vec::new(); columns.len()];
    for row in reader.records() {
        let row = row.map_err(|e| err(e.to_string()))?;
        for (k, (i, _)) in columns.iter().enumerate() {
            if let Some(v) = row.get(*i).filter(|c| !c.is_empty()) {
                seqs[k].push(v.parse().map_err(|_| err(format!("`{v}` is not a counter")))?);
            }
        }
    }
    Ok(columns
        .into_iter()
        .zip(seqs)
        .map(|((_, drive), s)| {
            let (lines, lost) = counter_gaps(s);
            (drive, lines, lost)
        })
        .collect())
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the whole process (every thread).
pub fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let ok = unsafe { libc::clock_gettime(clock, &mut ts) } == 0;
    if ok { Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32) } else { Duration::ZERO }
}

/// Resident memory of this process, in bytes.
pub fn resident_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = text.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page
}

/// The p-quantile (0..=1) of `values` (sorted in place), nearest rank.
pub fn quantile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// What the UI thread measures during a run.
#[derive(Debug, Default, Clone)]
pub struct FrameStats {
    /// CPU time of drivebench's own per-frame code (event pump, panels, plot queries), ms.
    pub app_ms: Vec<f64>,
    /// CPU time of the UI thread from one frame to the next (includes egui's tessellation and
    /// the GL calls; not the software rasteriser's own threads), ms.
    pub thread_ms: Vec<f64>,
    /// Frames that ran with the window minimised.
    pub minimized_frames: u64,
    /// Seconds the window system reported the window minimised.
    pub minimized_s: f64,
}

/// One drive's figures at the end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct DriveFigures {
    pub name: String,
    /// Lines counted while the drive streamed (followed live, whatever the history holds).
    pub counted: LineCounter,
    /// Lines and lost lines in the recording.
    pub csv: Option<(u64, u64)>,
    pub link_losses: usize,
    pub connected_at_end: bool,
    /// Not connected at the end: seconds since its link went (a reconnect may be under way).
    pub lost_for_s: Option<f64>,
}

/// The outcome of a load run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub drives: usize,
    pub rate_hz: f64,
    pub seconds: f64,
    pub per_drive: Vec<DriveFigures>,
    pub frames: FrameStats,
    pub process_cpu_pct: f64,
    pub resident_mb: f64,
    /// Resident memory sampled every minute: (seconds into the run, MB).
    pub memory_mb: Vec<(f64, f64)>,
    pub csv: Option<PathBuf>,
    pub csv_mb: f64,
    pub recorder_lost: u64,
    /// Emulators killed and started again (soak).
    pub restarts: u64,
}

impl LoadReport {
    pub fn lost(&self) -> u64 {
        self.recorder_lost
            + self.per_drive.iter().map(|d| d.counted.lost + d.csv.map_or(0, |c| c.1)).sum::<u64>()
    }

    /// Drives that sent nothing, or (soak) did not come back after their last disconnect.
    pub fn silent(&self) -> Vec<&str> {
        self.per_drive
            .iter()
            .filter(|d| {
                d.counted.lines == 0
                    || d.csv.is_some_and(|c| c.0 == 0)
                    || !d.connected_at_end && d.lost_for_s.is_none_or(|s| s > RECONNECT_GRACE_S)
            })
            .map(|d| d.name.as_str())
            .collect()
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} emulated drives × {} lines/s for {:.0} s (GUI open)",
            self.drives, self.rate_hz, self.seconds
        )?;
        for d in &self.per_drive {
            write!(f, "  {}: {} lines received ({} lost)", d.name, d.counted.lines, d.counted.lost)?;
            if let Some((lines, lost)) = d.csv {
                write!(f, ", {lines} in the CSV ({lost} lost)")?;
            }
            if d.link_losses > 0 || d.counted.restarts > 0 {
                write!(
                    f,
                    ", link lost {} times, {} restarts seen, {}",
                    d.link_losses,
                    d.counted.restarts,
                    if d.connected_at_end { "connected at the end" } else { "NOT connected at the end" }
                )?;
            }
            writeln!(f)?;
        }
        if self.restarts > 0 {
            writeln!(f, "emulators killed and restarted: {}", self.restarts)?;
        }
        let mut app = self.frames.app_ms.clone();
        let mut thread = self.frames.thread_ms.clone();
        writeln!(
            f,
            "UI frames: {} ({} while minimised; minimised {:.0} s)",
            app.len(),
            self.frames.minimized_frames,
            self.frames.minimized_s
        )?;
        writeln!(
            f,
            "drivebench code per frame: p50 {:.2} ms, p99 {:.2} ms; UI thread CPU per frame: p50 {:.2} ms, p99 {:.2} ms",
            quantile(&mut app, 0.5),
            quantile(&mut app, 0.99),
            quantile(&mut thread, 0.5),
            quantile(&mut thread, 0.99)
        )?;
        writeln!(
            f,
            "process CPU {:.0} % of one core (all threads, incl. software GL), resident {:.0} MB",
            self.process_cpu_pct, self.resident_mb
        )?;
        if !self.memory_mb.is_empty() {
            let curve: Vec<String> =
                self.memory_mb.iter().map(|(t, mb)| format!("{:.0} min {mb:.0} MB", t / 60.0)).collect();
            writeln!(f, "resident memory: {}", curve.join(", "))?;
        }
        if let Some(csv) = &self.csv {
            writeln!(
                f,
                "recording {} ({:.1} MB), recorder lost {}",
                csv.display(),
                self.csv_mb,
                self.recorder_lost
            )?;
        }
        write!(f, "samples lost: {}", self.lost())
    }
}

/// Phases of a run, driven from the app's logic pass (which eframe runs even while the window
/// is minimised).
#[derive(Debug)]
pub struct LoadRun {
    pub opts: LoadOptions,
    pub started: Instant,
    pub recording_since: Option<Instant>,
    pub cpu_at_start: Duration,
    pub frames: FrameStats,
    pub minimized_now: bool,
    pub last_thread_cpu: Option<Duration>,
    pub last_minimized_check: Option<Instant>,
    pub done: bool,
    /// One follower per drive, in bench order.
    pub followers: Vec<SeqFollower>,
    pub memory_mb: Vec<(f64, f64)>,
    pub next_memory_s: f64,
}

impl LoadRun {
    pub fn new(opts: LoadOptions) -> Self {
        LoadRun {
            opts,
            started: Instant::now(),
            recording_since: None,
            cpu_at_start: process_cpu(),
            frames: FrameStats::default(),
            minimized_now: false,
            last_thread_cpu: None,
            last_minimized_check: None,
            done: false,
            followers: Vec::new(),
            memory_mb: Vec::new(),
            next_memory_s: 0.0,
        }
    }

    /// Whether the window should be minimised `t_s` seconds into the recording.
    pub fn wants_minimized(&self, t_s: f64) -> bool {
        self.opts.minimized.iter().any(|&(a, b)| t_s >= a && t_s < b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_gaps_count_missing_lines_only() {
        assert_eq!(counter_gaps([5.0, 6.0, 7.0]), (3, 0));
        assert_eq!(counter_gaps([5.0, 6.0, 9.0, 10.0]), (4, 2));
        assert_eq!(counter_gaps(Vec::<f64>::new()), (0, 0));
    }

    #[test]
    fn a_restarted_counter_is_a_new_count_not_a_loss() {
        let mut c = LineCounter::default();
        for s in [10.0, 11.0, f64::NAN, 0.0, 1.0, 3.0] {
            c.add(s);
        }
        assert_eq!(c, LineCounter { lines: 5, lost: 1, restarts: 1, last: Some(3.0) });
    }

    #[test]
    fn the_follower_counts_each_sample_once_even_with_shared_times() {
        let mut s = crate::telemetry::Series::new(100);
        let mut f = SeqFollower::new();
        for (t, v) in [(0.0, 0.0), (0.1, 1.0), (0.1, 2.0)] {
            s.push(t, v);
        }
        f.follow(&s);
        for (t, v) in [(0.1, 3.0), (0.2, 5.0)] {
            s.push(t, v);
        }
        f.follow(&s);
        f.follow(&s);
        assert_eq!((f.counter.lines, f.counter.lost), (5, 1));
    }

    #[test]
    fn csv_counters_find_gaps_per_drive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "time_s,a.speed_rpm,a.seq,b.seq\n0,1,0,\n0.1,,,7\n0.2,1,1,8\n0.3,1,3,\n")
            .unwrap();
        let c = csv_counters(&path).unwrap();
        assert_eq!(c, vec![("a".to_owned(), 3, 1), ("b".to_owned(), 2, 0)]);
    }

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.5), 50.0);
        assert_eq!(quantile(&mut v, 0.99), 99.0);
        assert!(quantile(&mut [], 0.5).is_nan());
    }

    #[test]
    fn cpu_clocks_advance_with_work() {
        let t0 = thread_cpu();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu() > t0);
        assert!(process_cpu() >= thread_cpu());
        assert!(resident_bytes() > 1_000_000);
    }
}
