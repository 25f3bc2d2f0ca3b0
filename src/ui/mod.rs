//! The desktop UI: `BenchApp` (testable without a window) and its panels, plus the eframe
//! wrapper that adds persistence (recent projects) and the scripted screenshot mode.

pub mod app;
pub mod console;
pub mod control;
pub mod drive_list;
pub mod export;
pub mod files;
pub mod history;
pub mod params;
pub mod plots;
pub mod scope;
pub mod serial;
pub mod status;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use app::{BenchApp, DemoScript};

use crate::loadtest::{
    DriveFigures, LoadReport, LoadRun, SeqFollower, csv_counters, process_cpu, resident_bytes, thread_cpu,
};
use crate::project::Project;

const RECENT_KEY: &str = "recent_projects";

/// Outcome of `--screenshot`, shared with the screenshot callback.
pub type ScreenshotResult = Arc<Mutex<Option<Result<PathBuf, String>>>>;

/// Outcome of `drivebench bench`, filled in when the run ends.
pub type LoadResult = Arc<Mutex<Option<Result<LoadReport, String>>>>;

/// Where and when to capture the window in screenshot mode.
pub struct ScreenshotPlan {
    pub out: PathBuf,
    pub frames: u64,
    pub result: ScreenshotResult,
}

/// eframe wrapper around [`BenchApp`].
pub struct DrivebenchApp {
    pub app: BenchApp,
    screenshot: Option<ScreenshotPlan>,
    requested: bool,
    load: Option<(LoadRun, LoadResult)>,
    /// CPU time of this frame's logic pass, added to the frame's ui pass.
    logic_cpu: std::time::Duration,
}

impl DrivebenchApp {
    pub fn new(
        cc: &eframe::CreationContext<'_>,
        project: Project,
        path: Option<PathBuf>,
        screenshot: Option<ScreenshotPlan>,
    ) -> Self {
        let mut app = BenchApp::new(project, path.clone(), Some(&cc.egui_ctx));
        if let Some(storage) = cc.storage
            && let Some(recent) = eframe::get_value::<Vec<PathBuf>>(storage, RECENT_KEY)
        {
            app.recent = recent;
        }
        if let Some(p) = path {
            app.recent.retain(|r| r != &p);
            app.recent.insert(0, p);
        }
        if let Some(plan) = &screenshot {
            let frames = plan.frames;
            app = app.with_script(DemoScript { frames, enabled_at_s: None });
        } else if let Some(dir) = crate::logfile::default_dir() {
            // Scripted runs leave no autosave behind and find none.
            app.enable_autosave(dir);
        }
        DrivebenchApp { app, screenshot, requested: false, load: None, logic_cpu: Duration::ZERO }
    }

    /// Runs the load test of `drivebench bench` in this window.
    pub fn with_load(mut self, run: LoadRun, result: LoadResult) -> Self {
        self.app.autosave_dir = None;
        self.app.restore_offer = None;
        self.load = Some((run, result));
        self
    }

    /// The load test's phases: wait for every drive, record, minimise when asked, finish.
    fn drive_load(&mut self, ctx: &egui::Context) {
        self.app.quit_approved = true;
        let Some((run, result)) = &mut self.load else { return };
        if run.done {
            return;
        }
        ctx.request_repaint_after(Duration::from_millis(100));
        let bench = &self.app.bench;
        let Some(since) = run.recording_since else {
            let ready = bench.drives.iter().all(|d| {
                d.state.is_connected()
                    && d.telemetry().series(crate::loadtest::SEQ).is_some_and(|s| s.len() > 10)
            });
            if ready {
                if !run.opts.record || self.app.start_recording(Some(run.opts.csv.clone())) {
                    run.recording_since = Some(std::time::Instant::now());
                    run.cpu_at_start = process_cpu();
                    run.followers = self.app.bench.drives.iter().map(|_| SeqFollower::new()).collect();
                } else {
                    run.done = true;
                    *result.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Err("cannot start the recording".into()));
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
            } else if run.started.elapsed() > Duration::from_secs(30) {
                run.done = true;
                let states: Vec<String> =
                    bench.drives.iter().map(|d| format!("{}: {}", d.name(), d.state.label())).collect();
                *result.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Err(format!("the drives did not all stream within 30 s ({})", states.join(", "))));
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            return;
        };
        let t_s = since.elapsed().as_secs_f64();
        // Count every line as it arrives (the history may be shorter than the run).
        for (d, follower) in bench.drives.iter().zip(&mut run.followers) {
            if let Some(series) = d.telemetry().series(crate::loadtest::SEQ) {
                follower.follow(series);
            }
        }
        if t_s >= run.next_memory_s {
            run.memory_mb.push((t_s, resident_bytes() as f64 / 1e6));
            run.next_memory_s += 60.0;
        }
        let now = std::time::Instant::now();
        let minimized = ctx.input(|i| i.viewport().minimized) == Some(true);
        if let Some(last) = run.last_minimized_check
            && minimized
        {
            run.frames.minimized_s += now.duration_since(last).as_secs_f64();
        }
        run.last_minimized_check = Some(now);
        let wants = run.wants_minimized(t_s) && t_s < run.opts.seconds;
        if wants != run.minimized_now {
            run.minimized_now = wants;
            ctx.send_viewport_cmd(egui::ViewportCommand::Minimized(wants));
            if !wants {
                ctx.send_viewport_cmd(egui::ViewportCommand::Focus);
            }
        }
        if t_s < run.opts.seconds {
            return;
        }
        run.done = true;
        let wall = since.elapsed().as_secs_f64();
        let cpu = (process_cpu() - run.cpu_at_start).as_secs_f64();
        let summary = self.app.bench.stop_recording();
        let outcome = (|| -> Result<LoadReport, String> {
            let summary = match summary {
                Some(s) => Some(s.map_err(|e| e.to_string())?),
                None if run.opts.record => return Err("no recording ran".into()),
                None => None,
            };
            let in_csv = match &summary {
                Some(s) => csv_counters(&s.path).map_err(|e| e.to_string())?,
                None => Vec::new(),
            };
            let per_drive = self
                .app
                .bench
                .drives
                .iter()
                .zip(&run.followers)
                .map(|(d, f)| DriveFigures {
                    name: d.name().to_owned(),
                    counted: f.counter,
                    csv: summary.as_ref().map(|_| {
                        in_csv.iter().find(|(n, _, _)| n == d.name()).map_or((0, 0), |(_, l, g)| (*l, *g))
                    }),
                    link_losses: d.link_losses.len(),
                    connected_at_end: d.state.is_connected(),
                    lost_for_s: match &d.state {
                        crate::drive::DriveState::LinkLost { since_s, .. } => {
                            Some(self.app.bench.clock.now_s() - since_s)
                        }
                        _ => None,
                    },
                })
                .collect();
            Ok(LoadReport {
                drives: run.opts.drives,
                rate_hz: run.opts.rate_hz,
                seconds: wall,
                per_drive,
                frames: run.frames.clone(),
                process_cpu_pct: 100.0 * cpu / wall,
                resident_mb: resident_bytes() as f64 / 1e6,
                memory_mb: run.memory_mb.clone(),
                csv: summary.as_ref().map(|s| s.path.clone()),
                csv_mb: summary.as_ref().map_or(0.0, |s| s.bytes as f64 / 1e6),
                recorder_lost: summary.as_ref().map_or(0, |s| s.lost),
                restarts: 0,
            })
        })();
        *result.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }
}

impl eframe::App for DrivebenchApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        let started = self.load.as_ref().map(|_| thread_cpu());
        self.app.logic(ctx);
        if let Some(t0) = started {
            self.logic_cpu += thread_cpu() - t0;
            if let Some((run, _)) = &mut self.load
                && run.recording_since.is_some()
                && run.minimized_now
            {
                run.frames.minimized_frames += 1;
            }
            self.drive_load(ctx);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = self.load.as_ref().map(|_| thread_cpu());
        self.app.ui(ui);
        if let (Some(t0), Some((run, _))) = (started, &mut self.load) {
            let now = thread_cpu();
            if run.recording_since.is_some() && !run.done {
                run.frames.app_ms.push((now - t0 + self.logic_cpu).as_secs_f64() * 1e3);
                if let Some(prev) = run.last_thread_cpu {
                    run.frames.thread_ms.push((t0 - prev).as_secs_f64() * 1e3);
                }
            }
            run.last_thread_cpu = Some(t0);
            self.logic_cpu = Duration::ZERO;
        }
        let ctx = ui.ctx().clone();
        let Some(plan) = &self.screenshot else { return };
        // Paced frames so that N frames span real time and the plots fill.
        ctx.request_repaint_after(Duration::from_millis(16));
        let done = plan.result.lock().map(|r| r.is_some()).unwrap_or(true);
        if done {
            // A scripted run ends on its own: its drives are disabled on exit, no question asked.
            self.app.quit_approved = true;
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        } else if !self.requested && self.app.script_done() {
            self.requested = true;
            let out = plan.out.clone();
            let result = plan.result.clone();
            let ctx2 = ctx.clone();
            ctx.request_screenshot(move |image| {
                let saved = save_png(&image, &out).map(|()| out.clone());
                if let Ok(mut r) = result.lock() {
                    *r = Some(saved);
                }
                ctx2.request_repaint();
            });
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, RECENT_KEY, &self.app.recent);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // Leave no motor running: disable everything, then let the workers shut down.
        self.app.bench.disable_all();
        self.app.bench.pump(Duration::from_millis(50));
        // A running recording gets everything received written and the file closed.
        self.app.stop_recording();
        self.app.clean_exit();
    }
}

/// Writes an egui screenshot as PNG.
pub fn save_png(image: &egui::ColorImage, out: &std::path::Path) -> Result<(), String> {
    let [w, h] = image.size;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    let buffer = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
        .ok_or_else(|| "screenshot has an inconsistent size".to_owned())?;
    buffer.save(out).map_err(|e| format!("cannot write {}: {e}", out.display()))
}
