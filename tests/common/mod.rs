//! What the UI test files share: a harness around the whole app, and stepping until a
//! condition holds while the drives run in real time behind the UI.

use std::time::{Duration, Instant};

use drivebench::ui::BenchApp;
use egui_kittest::Harness;

pub fn harness(app: BenchApp) -> Harness<'static, BenchApp> {
    Harness::builder().with_size([1400.0, 1000.0]).build_ui_state(
        |ui, app: &mut BenchApp| {
            let ctx = ui.ctx().clone();
            app.logic(&ctx);
            app.ui(ui);
        },
        app,
    )
}

/// Steps frames (the drives run in real time behind the UI) until `pred` holds.
pub fn step_until(h: &mut Harness<'_, BenchApp>, what: &str, mut pred: impl FnMut(&BenchApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        h.step();
        if pred(h.state()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting for: {what}");
}
