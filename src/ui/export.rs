//! Export of what the plots show: every raw stored sample of the visible traces in the visible
//! time window as CSV (the layout of `drivebench record`), and the plot stack as a PNG cropped
//! from a screenshot of the window. Save dialogs run on their own thread.

use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender, bounded};
use thiserror::Error;

use crate::bench::Bench;
use crate::drive::{Sample, SignalSpec};
use crate::telemetry::{CsvRecorder, RecordError};

/// Why an export failed.
#[derive(Debug, Error)]
pub enum ExportError {
    #[error("no trace is shown: show at least one in the legend, then export again")]
    NothingShown,
    #[error("cannot create {path}: {source} — choose a folder you can write to")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: RecordError },
    #[error("the plots are not on screen (crop {width}×{height} px of a {image_w}×{image_h} px window)")]
    EmptyCrop { width: u32, height: u32, image_w: usize, image_h: usize },
    #[error("cannot write {path}: {message}")]
    Png { path: PathBuf, message: String },
    #[error("the window could not be captured")]
    NoScreenshot,
}

/// One trace to export: a drive by name and one of its signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRef {
    pub drive: String,
    pub signal: String,
}

/// The raw samples of some traces over a time window, copied out of the drives' stores so that
/// writing them does not hold any store locked.
#[derive(Debug, Clone, Default)]
pub struct WindowSamples {
    /// Per drive with at least one trace: its name and the exported signals (CSV columns).
    pub drives: Vec<(String, Vec<SignalSpec>)>,
    /// Per entry of `drives`: its samples, `signal` indexing that drive's exported signals.
    pub samples: Vec<Vec<Sample>>,
}

impl WindowSamples {
    /// Copies the samples with `t` in `[t0_s, t1_s)` of `traces` (unknown ones are skipped).
    /// Each drive's store is locked once, for the copy.
    pub fn collect(bench: &Bench, traces: &[TraceRef], t0_s: f64, t1_s: f64) -> Self {
        let mut out = WindowSamples::default();
        for drive in &bench.drives {
            let wanted: Vec<&TraceRef> = traces.iter().filter(|t| t.drive == drive.name()).collect();
            if wanted.is_empty() {
                continue;
            }
            let telemetry = drive.telemetry();
            let mut specs = Vec::new();
            let mut samples = Vec::new();
            for trace in wanted {
                let Some(series) = telemetry.series(&trace.signal) else { continue };
                if specs.iter().any(|s: &SignalSpec| s.name == trace.signal) {
                    continue;
                }
                let signal = specs.len() as u16;
                let unit = telemetry.unit(&trace.signal).unwrap_or("");
                specs.push(SignalSpec::new(&trace.signal, unit));
                samples.extend(series.samples_in(t0_s, t1_s).map(|(t_s, value)| Sample {
                    t_s,
                    signal,
                    value,
                }));
            }
            drop(telemetry);
            if specs.is_empty() {
                continue;
            }
            // Stable: equal times keep the signal order, so a frame's samples stay together.
            samples.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
            out.drives.push((drive.name().to_owned(), specs));
            out.samples.push(samples);
        }
        out
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the CSV: `time_s`, then one `DRIVE.SIGNAL` column per exported signal, one row
    /// per drive frame in time order, blank cells where a drive has no sample. Returns the
    /// number of rows.
    pub fn write_csv(&self, path: &Path) -> Result<u64, ExportError> {
        if self.drives.is_empty() {
            return Err(ExportError::NothingShown);
        }
        let file = std::fs::File::create(path)
            .map_err(|source| ExportError::Create { path: path.to_owned(), source })?;
        let write_err = |source| ExportError::Write { path: path.to_owned(), source };
        let mut recorder = CsvRecorder::new(std::io::BufWriter::new(file), &self.drives);
        // Fed in global time order (each call: one drive's run of samples up to the next
        // sample of another drive), so that no row can reach the recorder after a later one
        // was written, and its reordering buffer stays small.
        let mut next = vec![0usize; self.samples.len()];
        let head = |d: usize, next: &[usize]| self.samples[d].get(next[d]).map(|s| s.t_s);
        while let Some(d) = (0..next.len()).filter(|&d| head(d, &next).is_some()).min_by(|&a, &b| {
            head(a, &next).unwrap_or(f64::INFINITY).total_cmp(&head(b, &next).unwrap_or(f64::INFINITY))
        }) {
            let others = (0..next.len())
                .filter(|&o| o != d)
                .filter_map(|o| head(o, &next))
                .fold(f64::INFINITY, f64::min);
            let rest = &self.samples[d][next[d]..];
            let n = rest.partition_point(|s| s.t_s <= others).max(1);
            recorder.add(&self.drives[d].0, &rest[..n]).map_err(write_err)?;
            next[d] += n;
        }
        recorder.write_all().map_err(write_err)?;
        let rows = recorder.rows_written();
        let mut out = recorder.finish().map_err(write_err)?;
        use std::io::Write as _;
        out.flush().map_err(|e| write_err(RecordError::Io(e)))?;
        Ok(rows)
    }
}

/// Writes the samples of `traces` with `t` in `[t0_s, t1_s)` as CSV; returns the rows written.
pub fn export_csv(
    bench: &Bench,
    traces: &[TraceRef],
    t0_s: f64,
    t1_s: f64,
    path: &Path,
) -> Result<u64, ExportError> {
    WindowSamples::collect(bench, traces, t0_s, t1_s).write_csv(path)
}

/// Crops `rect_px` (`[x0, y0, x1, y1]` in physical pixels, clamped to the image) out of a
/// screenshot and writes it as PNG. Returns the size written.
pub fn save_png_crop(
    image: &egui::ColorImage,
    rect_px: [f32; 4],
    path: &Path,
) -> Result<[u32; 2], ExportError> {
    let [w, h] = image.size;
    let clamp = |v: f32, max: usize| (v.round().max(0.0) as usize).min(max);
    let (x0, y0) = (clamp(rect_px[0], w), clamp(rect_px[1], h));
    let (x1, y1) = (clamp(rect_px[2], w), clamp(rect_px[3], h));
    let (cw, ch) = (x1.saturating_sub(x0), y1.saturating_sub(y0));
    if cw == 0 || ch == 0 {
        return Err(ExportError::EmptyCrop { width: cw as u32, height: ch as u32, image_w: w, image_h: h });
    }
    let mut bytes = Vec::with_capacity(cw * ch * 4);
    for y in y0..y1 {
        for c in &image.pixels[y * w + x0..y * w + x1] {
            bytes.extend_from_slice(&c.to_srgba_unmultiplied());
        }
    }
    let png_err = |message: String| ExportError::Png { path: path.to_owned(), message };
    let buffer = image::RgbaImage::from_raw(cw as u32, ch as u32, bytes)
        .ok_or_else(|| png_err("inconsistent image size".into()))?;
    buffer.save_with_format(path, image::ImageFormat::Png).map_err(|e| png_err(e.to_string()))?;
    Ok([cw as u32, ch as u32])
}

/// What an export dialog was opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Csv,
    Png,
}

/// Save dialogs for exports, each blocking its own thread; the chosen path comes back over a
/// channel so that the plots keep running while a dialog is open.
pub struct ExportDialogs {
    tx: Sender<(ExportKind, Option<PathBuf>)>,
    rx: Receiver<(ExportKind, Option<PathBuf>)>,
    open: bool,
}

impl Default for ExportDialogs {
    fn default() -> Self {
        let (tx, rx) = bounded(2);
        ExportDialogs { tx, rx, open: false }
    }
}

impl ExportDialogs {
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The kind and path chosen in a dialog that has closed (`None` path: cancelled).
    pub fn poll(&mut self) -> Option<(ExportKind, Option<PathBuf>)> {
        let result = self.rx.try_recv().ok()?;
        self.open = false;
        Some(result)
    }

    /// Opens a save dialog (one at a time) and wakes the UI when it closes.
    pub fn save(&mut self, kind: ExportKind, ctx: &egui::Context) {
        if self.open {
            return;
        }
        let (title, filter, ext) = match kind {
            ExportKind::Csv => ("Export visible window as CSV", "CSV", "csv"),
            ExportKind::Png => ("Export plots as PNG", "PNG image", "png"),
        };
        let tx = self.tx.clone();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new().name("export-dialog".into()).spawn(move || {
            let dialog = || {
                rfd::FileDialog::new()
                    .set_title(title)
                    .add_filter(filter, &[ext])
                    .set_file_name(format!("scope.{ext}"))
                    .save_file()
                    .map(|p| if p.extension().is_none() { p.with_extension(ext) } else { p })
            };
            // A crashed dialog counts as cancelled, which re-enables the export.
            let chosen = std::panic::catch_unwind(dialog).ok().flatten();
            let _ = tx.send((kind, chosen));
            ctx.request_repaint();
        });
        self.open = spawned.is_ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crop_keeps_the_pixels_of_its_rectangle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crop.png");
        let mut image = egui::ColorImage::filled([40, 30], egui::Color32::BLACK);
        image.pixels[12 * 40 + 15] = egui::Color32::from_rgb(200, 10, 30);
        assert_eq!(save_png_crop(&image, [10.0, 10.0, 30.0, 25.0], &path).unwrap(), [20, 15]);
        let back = image::open(&path).unwrap().to_rgba8();
        assert_eq!(back.dimensions(), (20, 15));
        assert_eq!(back.get_pixel(5, 2).0, [200, 10, 30, 255]);
        assert_eq!(back.get_pixel(0, 0).0, [0, 0, 0, 255]);
        // Clamped to the image; nothing left is an error, not a panic.
        assert_eq!(save_png_crop(&image, [30.0, 20.0, 99.0, 99.0], &path).unwrap(), [10, 10]);
        assert!(matches!(
            save_png_crop(&image, [50.0, 0.0, 60.0, 10.0], &path),
            Err(ExportError::EmptyCrop { .. })
        ));
        let err =
            save_png_crop(&image, [0.0, 0.0, 5.0, 5.0], &dir.path().join("no/such/dir.png")).unwrap_err();
        assert!(err.to_string().contains("no/such/dir.png"), "{err}");
    }

    #[test]
    fn csv_rows_are_frames_in_time_order_across_drives() {
        let w = WindowSamples {
            drives: vec![
                ("a".into(), vec![SignalSpec::new("x", "A"), SignalSpec::new("y", "V")]),
                ("b".into(), vec![SignalSpec::new("z", "rpm")]),
            ],
            samples: vec![
                vec![
                    Sample { t_s: 0.0, signal: 0, value: 1.0 },
                    Sample { t_s: 0.0, signal: 1, value: 2.0 },
                    Sample { t_s: 0.002, signal: 0, value: 3.0 },
                ],
                vec![
                    Sample { t_s: 0.001, signal: 0, value: 9.5 },
                    Sample { t_s: 0.002, signal: 0, value: 9.0 },
                ],
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.csv");
        assert_eq!(w.write_csv(&path).unwrap(), 4);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "time_s,a.x,a.y,b.z\n0.000000,1,2,\n0.001000,,,9.5\n0.002000,3,,\n0.002000,,,9\n");
        let err = w.write_csv(&dir.path().join("missing/w.csv")).unwrap_err();
        assert!(matches!(err, ExportError::Create { .. }), "{err}");
        assert!(matches!(WindowSamples::default().write_csv(&path), Err(ExportError::NothingShown)));
    }

    #[test]
    fn csv_slices_keep_a_long_export_in_order() {
        // Two drives at different rates, far more samples than one slice.
        let a: Vec<Sample> =
            (0..20_000).map(|i| Sample { t_s: i as f64 * 1e-3, signal: 0, value: i as f64 }).collect();
        let b: Vec<Sample> =
            (0..7_000).map(|i| Sample { t_s: i as f64 * 3e-3, signal: 0, value: -(i as f64) }).collect();
        let w = WindowSamples {
            drives: vec![
                ("a".into(), vec![SignalSpec::new("x", "")]),
                ("b".into(), vec![SignalSpec::new("y", "")]),
            ],
            samples: vec![a, b],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.csv");
        let rows = w.write_csv(&path).unwrap();
        assert_eq!(rows, 27_000);
        let text = std::fs::read_to_string(&path).unwrap();
        let times: Vec<f64> =
            text.lines().skip(1).map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
        assert_eq!(times.len(), 27_000);
        assert!(times.windows(2).all(|p| p[0] <= p[1]), "rows out of time order");
    }
}
