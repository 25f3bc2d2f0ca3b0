//! The desktop UI: `BenchApp` (testable without a window) and its panels, plus the eframe
//! wrapper that adds persistence (recent projects) and the scripted screenshot mode.

pub mod app;
pub mod console;
pub mod control;
pub mod drive_list;
pub mod export;
pub mod files;
pub mod params;
pub mod plots;
pub mod scope;
pub mod serial;
pub mod status;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use app::{BenchApp, DemoScript};

use crate::project::Project;

const RECENT_KEY: &str = "recent_projects";

/// Outcome of `--screenshot`, shared with the screenshot callback.
pub type ScreenshotResult = Arc<Mutex<Option<Result<PathBuf, String>>>>;

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
        }
        DrivebenchApp { app, screenshot, requested: false }
    }
}

impl eframe::App for DrivebenchApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.app.logic(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.app.ui(ui);
        let ctx = ui.ctx().clone();
        let Some(plan) = &self.screenshot else { return };
        // Paced frames so that N frames span real time and the plots fill.
        ctx.request_repaint_after(Duration::from_millis(16));
        let done = plan.result.lock().map(|r| r.is_some()).unwrap_or(true);
        if done {
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
