//! The scope tools of the plots, driven through egui_kittest with real simulated drives
//! streaming behind them: cursors, trigger, statistics, second value axis, export, ranges.

use drivebench::drive::{Command, ControlMode, DriveState};
use drivebench::project::{Project, TriggerMode};
use drivebench::ui::BenchApp;
use drivebench::ui::scope::{TriggerState, format_value};
use egui::{Key, Role};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

mod common;
use common::{harness, step_until};

/// Replaces the text of a number field (a drag value) labelled `label` and presses Enter.
fn type_into_value(h: &mut Harness<'_, BenchApp>, label: &str, text: &str) {
    h.get_by_role_and_label(Role::SpinButton, label).focus();
    h.step();
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::A);
    h.step();
    // A focused drag value edits its text, and keeps its role.
    h.get_by_role_and_label(Role::SpinButton, label).type_text(text);
    h.step();
    h.key_press(Key::Enter);
    h.step();
}

fn demo_app() -> BenchApp {
    BenchApp::new(Project::demo(), None, None)
}

fn all_idle(app: &BenchApp) -> bool {
    app.bench.drives.iter().all(|d| d.state == DriveState::Idle)
}

/// Seconds of history every drive has stored.
fn history_s(app: &BenchApp) -> f64 {
    app.bench
        .drives
        .iter()
        .map(|d| d.telemetry().time_span().map_or(0.0, |(a, b)| b - a))
        .fold(f64::INFINITY, f64::min)
}

fn enable_at(h: &mut Harness<'_, BenchApp>, drive: usize, speed_rpm: f64) {
    let d = &mut h.state_mut().bench.drives[drive];
    d.send(Command::SetMode(ControlMode::Speed)).unwrap();
    d.send(Command::Enable).unwrap();
    d.send(Command::SetSetpoint(ControlMode::Speed, speed_rpm)).unwrap();
}

fn set_speed(h: &mut Harness<'_, BenchApp>, drive: usize, speed_rpm: f64) {
    h.state_mut().bench.drives[drive].send(Command::SetSetpoint(ControlMode::Speed, speed_rpm)).unwrap();
}

fn speed_now(app: &BenchApp, drive: usize) -> f64 {
    app.bench.drives[drive].telemetry().series("speed_rpm").and_then(|s| s.last()).map_or(f64::NAN, |l| l.1)
}

#[test]
fn cursors_typed_in_give_delta_t_and_the_values_at_the_nearest_samples() {
    let mut h = harness(demo_app());
    step_until(&mut h, "1.5 s of history", |a| history_s(a) > 1.5);
    h.get_by_label("Cursors").click();
    h.run_steps(2);
    assert!(h.state().plots.cursors.shown);

    // Two times inside the stored history, typed as a user would.
    let now = h.state().bench.clock.now_s();
    let a = ((now - 1.0) * 1000.0).round() / 1000.0;
    let b = a + 0.25;
    type_into_value(&mut h, "Cursor A:", &a.to_string());
    type_into_value(&mut h, "Cursor B:", &b.to_string());
    h.run_steps(2);
    let plots = &h.state().plots;
    assert_eq!((plots.cursors.a_s, plots.cursors.b_s), (a, b));
    assert!((plots.cursors.dt_s() - 0.25).abs() < 1e-9);
    assert!(h.query_all_by_label_contains("Δt = 0.25 s").count() > 0, "Δt is shown");
    assert!(h.query_all_by_label_contains("1/Δt = 4 Hz").count() > 0, "1/Δt is shown");

    // Every shown trace, with the values of its nearest samples and their units.
    let rows = h.state().plots.cursor_rows.clone();
    assert_eq!(rows.len(), 8, "two drives × four traces: {rows:?}");
    for row in &rows {
        let (drive, signal) = row.key.split_once('.').unwrap();
        let d = h.state().bench.by_name(drive).unwrap();
        let telemetry = d.telemetry();
        let series = telemetry.series(signal).unwrap();
        assert_eq!(row.at_a, series.nearest(a).map(|s| s.1), "{}", row.key);
        assert_eq!(row.at_b, series.nearest(b).map(|s| s.1), "{}", row.key);
        assert_eq!(row.unit, telemetry.unit(signal).unwrap());
        assert_eq!(row.delta(), Some(row.at_b.unwrap() - row.at_a.unwrap()));
    }
    let speed = rows.iter().find(|r| r.key == "left.speed_rpm").unwrap();
    assert_eq!(speed.unit, "rpm");
    assert!(h.query_by_label(&format_value(speed.at_a.unwrap())).is_some(), "the table shows the value at A");
    // Outside the stored samples there is no value to read.
    h.state_mut().plots.cursors.b_s = -5.0;
    h.run_steps(2);
    assert!(h.state().plots.cursor_rows.iter().all(|r| r.at_b.is_none() && r.delta().is_none()));
    h.state_mut().plots.cursors.b_s = b;

    // Paused, a click in a plot puts A there, Shift+click puts B, and a cursor line drags.
    h.get_by_label("⏸ Pause").click();
    h.run_steps(3);
    let (rect, bounds) = h.state().plots.plot_frame(0).unwrap();
    let t_at = |x: f32| bounds.min()[0] + ((x - rect.left()) / rect.width()) as f64 * bounds.width();
    let click = egui::pos2(rect.left() + 0.3 * rect.width(), rect.center().y);
    h.hover_at(click);
    h.step();
    h.event(egui::Event::PointerButton {
        pos: click,
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: egui::Modifiers::NONE,
    });
    h.event(egui::Event::PointerButton {
        pos: click,
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: egui::Modifiers::NONE,
    });
    h.run_steps(2);
    let plots = &h.state().plots;
    assert!((plots.cursors.a_s - t_at(click.x)).abs() < bounds.width() / 200.0, "A at the click");
    let view = plots.view_s.unwrap();
    let shift_click = egui::pos2(rect.left() + 0.7 * rect.width(), rect.center().y);
    h.hover_at(shift_click);
    h.step();
    for pressed in [true, false] {
        h.event_modifiers(
            egui::Event::PointerButton {
                pos: shift_click,
                button: egui::PointerButton::Primary,
                pressed,
                modifiers: egui::Modifiers::SHIFT,
            },
            egui::Modifiers::SHIFT,
        );
    }
    h.run_steps(2);
    assert!(
        (h.state().plots.cursors.b_s - t_at(shift_click.x)).abs() < bounds.width() / 200.0,
        "B at the click"
    );

    let x_a = h.state().plots.time_to_x(h.state().plots.cursors.a_s).unwrap();
    let grab = egui::pos2(x_a, rect.center().y);
    h.hover_at(grab);
    h.step();
    h.drag_at(grab);
    h.step();
    for dx in [20.0, 60.0, 100.0] {
        h.hover_at(grab + egui::vec2(dx, 0.0));
        h.step();
    }
    h.drop_at(grab + egui::vec2(100.0, 0.0));
    h.run_steps(2);
    let plots = &h.state().plots;
    assert!((plots.cursors.a_s - t_at(x_a + 100.0)).abs() < bounds.width() / 100.0, "A dragged along");
    assert_eq!(plots.view_s.unwrap(), view, "dragging a cursor must not pan the plots");
}

#[test]
fn trigger_freezes_on_a_rising_speed_step_with_the_requested_pre_trigger_single_then_normal() {
    let mut h = harness(demo_app());
    step_until(&mut h, "demo drives connected with their signals", |a| {
        all_idle(a) && a.bench.drives.iter().all(|d| !d.signals.is_empty())
    });
    type_into_value(&mut h, "Window:", "2");
    assert_eq!(h.state().plots.window_s, 2.0);
    h.get_by_label("Trigger…").click();
    h.run_steps(2);
    // The source defaults to the first signal of the first drive: left.speed_rpm.
    assert_eq!(h.state().plots.trigger.settings.source, "left.speed_rpm");
    type_into_value(&mut h, "Level:", "500");
    type_into_value(&mut h, "Pre-trigger:", "25");
    let settings = &h.state().plots.trigger.settings;
    assert_eq!((settings.level, settings.pre_trigger), (500.0, 0.25));
    assert_eq!(settings.mode, TriggerMode::Single);
    // The level is marked while the settings are open; a click outside closes them.
    h.get_by_label("Scope:").click();
    h.run_steps(2);
    assert!(h.query_by_label("Pre-trigger:").is_none(), "the settings closed");

    h.get_by_label("⏺ Arm").click();
    h.run_steps(2);
    assert_eq!(h.state().plots.trigger.state(), TriggerState::Armed);
    assert!(h.query_by_label_contains("armed — waiting for left.speed_rpm").is_some());
    enable_at(&mut h, 0, 1000.0);
    step_until(&mut h, "a capture", |a| a.plots.trigger.capture.is_some());
    let c = h.state().plots.trigger.capture.clone().unwrap();
    assert_eq!(h.state().plots.trigger.state(), TriggerState::Stopped, "single mode disarms");
    assert!(!h.state().plots.follow, "the view froze");
    assert!(((c.t1_s - c.t0_s) - 2.0).abs() < 1e-9, "{c:?}");
    assert!(((c.t_trig_s - c.t0_s) / (c.t1_s - c.t0_s) - 0.25).abs() < 1e-9, "{c:?}");
    h.run_steps(2);
    let view = h.state().plots.view_s.unwrap();
    assert!((view.0 - c.t0_s).abs() < 1e-9 && (view.1 - c.t1_s).abs() < 1e-9, "{view:?} vs {c:?}");
    assert!(h.query_by_label_contains("Triggered at t = ").is_some());
    {
        // The signal really crosses 500 rpm upwards at the trigger time.
        let telemetry = h.state().bench.drives[0].telemetry();
        let speed = telemetry.series("speed_rpm").unwrap();
        let before = speed.samples_in(c.t0_s, c.t_trig_s).last().unwrap();
        let after = speed.samples_in(c.t_trig_s, c.t1_s).next().unwrap();
        assert!(before.1 < 500.0 && after.1 >= 500.0, "{before:?} → {after:?}");
        assert!(after.0 - before.0 < 0.01, "neighbouring samples: {before:?} → {after:?}");
        // The capture holds data all the way to its end.
        assert!(speed.last().unwrap().0 >= c.t1_s);
    }

    // Single: another crossing is ignored.
    set_speed(&mut h, 0, 0.0);
    step_until(&mut h, "speed down", |a| speed_now(a, 0) < 100.0);
    set_speed(&mut h, 0, 1000.0);
    step_until(&mut h, "speed up again", |a| speed_now(a, 0) > 900.0);
    h.run_steps(3);
    assert_eq!(h.state().plots.trigger.capture, Some(c.clone()), "single mode captured again");

    // Normal: re-armed after each capture; the next crossing replaces it.
    h.get_by_label("Trigger…").click();
    h.run_steps(2);
    h.get_by_label("normal").click();
    h.run_steps(2);
    h.get_by_label("Scope:").click();
    h.run_steps(2);
    assert_eq!(h.state().plots.trigger.settings.mode, TriggerMode::Normal);
    set_speed(&mut h, 0, 0.0);
    step_until(&mut h, "speed down", |a| speed_now(a, 0) < 100.0);
    h.get_by_label("⏺ Arm").click();
    h.run_steps(2);
    set_speed(&mut h, 0, 1000.0);
    step_until(&mut h, "first normal capture", |a| a.plots.trigger.captures == 1);
    let first = h.state().plots.trigger.capture.clone().unwrap();
    assert!(first.t_trig_s > c.t_trig_s);
    assert!(h.state().plots.trigger.is_armed(), "normal mode re-arms");
    h.run_steps(2);
    assert!(h.query_by_label_contains("re-armed").is_some());
    set_speed(&mut h, 0, 0.0);
    step_until(&mut h, "speed down", |a| speed_now(a, 0) < 100.0);
    set_speed(&mut h, 0, 1000.0);
    step_until(&mut h, "second normal capture", |a| a.plots.trigger.captures == 2);
    let second = h.state().plots.trigger.capture.clone().unwrap();
    assert!(second.t_trig_s > first.t1_s, "the next crossing after the first capture: {first:?} {second:?}");
    h.run_steps(2);
    let view = h.state().plots.view_s.unwrap();
    assert!((view.0 - second.t0_s).abs() < 1e-9, "the view shows the newest capture");
    h.get_by_label("■ Stop").click();
    h.run_steps(2);
    assert_eq!(h.state().plots.trigger.state(), TriggerState::Stopped);
}

#[test]
fn statistics_equal_a_brute_force_pass_over_the_visible_window() {
    let mut h = harness(demo_app());
    step_until(&mut h, "demo drives connected", all_idle);
    step_until(&mut h, "0.5 s of history", |a| history_s(a) > 0.5);
    let step_s = h.state().bench.clock.now_s();
    enable_at(&mut h, 0, 800.0);
    step_until(&mut h, "1 s after the step", |a| a.bench.clock.now_s() > step_s + 1.1);
    h.get_by_label("Statistics").click();
    // A window with the speed step in it.
    let range = (step_s - 0.25, step_s + 1.0);
    h.state_mut().plots.show_range(range.0, range.1);
    h.run_steps(3);
    let (rows, window) = h.state().plots.stats();
    let (rows, window) = (rows.to_vec(), window.unwrap());
    assert_eq!(window, range);
    assert_eq!(rows.len(), 8);
    for row in &rows {
        let (drive, signal) = row.key.split_once('.').unwrap();
        let d = h.state().bench.by_name(drive).unwrap();
        let telemetry = d.telemetry();
        let values: Vec<f64> = telemetry
            .series(signal)
            .unwrap()
            .samples_in(window.0, window.1)
            .map(|s| s.1)
            .filter(|v| !v.is_nan())
            .collect();
        let s = row.stats.expect("a window full of samples");
        let n = values.len() as f64;
        assert_eq!(s.count as usize, values.len(), "{}", row.key);
        assert!(values.len() > 1000, "{}: {} samples in 1.25 s", row.key, values.len());
        assert_eq!(s.min, values.iter().copied().fold(f64::INFINITY, f64::min), "{}", row.key);
        assert_eq!(s.max, values.iter().copied().fold(f64::NEG_INFINITY, f64::max), "{}", row.key);
        let mean = values.iter().sum::<f64>() / n;
        let rms = (values.iter().map(|v| v * v).sum::<f64>() / n).sqrt();
        assert!((s.mean - mean).abs() <= 1e-9 * mean.abs().max(1.0), "{}: {} vs {mean}", row.key, s.mean);
        assert!((s.rms - rms).abs() <= 1e-9 * rms.max(1.0), "{}: {} vs {rms}", row.key, s.rms);
        assert_eq!(row.unit, telemetry.unit(signal).unwrap());
    }
    // The speed really moved in that window: the figures are not all the same.
    let speed = rows.iter().find(|r| r.key == "left.speed_rpm").unwrap().stats.unwrap();
    assert!(speed.peak_to_peak() > 100.0, "{speed:?}");
    assert!(h.query_by_label(&format_value(speed.max)).is_some(), "the table shows the max");

    // A hidden trace leaves the table.
    h.get_by_role_and_label(Role::CheckBox, "right.current_a").click();
    h.run_steps(2);
    let (rows, _) = h.state().plots.stats();
    assert_eq!(rows.len(), 7);
    assert!(rows.iter().all(|r| r.key != "right.current_a"));
}

#[test]
fn a_signal_on_the_right_axis_keeps_true_values_and_is_saved_in_the_project() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(demo_app());
    step_until(&mut h, "demo drives connected", all_idle);
    enable_at(&mut h, 0, 1000.0);
    // Settled for a while: the hover below reads a few pixels (some 40 ms) before the newest
    // sample, which must not fall into the 50 ms rise.
    let enabled_at = h.state().bench.clock.now_s();
    step_until(&mut h, "speed up", |a| speed_now(a, 0) > 950.0 && a.bench.clock.now_s() > enabled_at + 0.5);

    // In the "Current" plot (the second one), add speed_rpm and put it on the right axis.
    h.get_all_by_label("Signals…").max_by(|a, b| a.rect().min.y.total_cmp(&b.rect().min.y)).unwrap().click();
    h.run_steps(2);
    h.get_by_role_and_label(Role::CheckBox, "speed_rpm").click();
    h.run_steps(2);
    let row_y = h.get_by_role_and_label(Role::CheckBox, "speed_rpm").rect().center().y;
    h.get_all_by_label("right axis")
        .min_by(|a, b| (a.rect().center().y - row_y).abs().total_cmp(&(b.rect().center().y - row_y).abs()))
        .unwrap()
        .click();
    h.run_steps(3);
    let cfg = h.state().plots.plots[1].clone();
    assert_eq!(cfg.title, "Current");
    assert!(cfg.signals.contains(&"speed_rpm".to_owned()));
    assert_eq!(cfg.right_signals, vec!["speed_rpm".to_owned()]);
    // A click outside closes the menu.
    h.get_by_label("Scope:").click();
    h.run_steps(3);
    assert!(h.query_by_label("right axis").is_none(), "the menu closed");

    // Drawn on the current scale (within its bounds), read back as true rpm.
    let (rect, bounds) = h.state().plots.plot_frame(1).unwrap();
    let map = h.state().plots.right_map(1).unwrap();
    let speed = speed_now(h.state(), 0);
    let y = map.to_plot(speed);
    assert!(bounds.min()[1] <= y && y <= bounds.max()[1], "{speed} rpm drawn at {y}, bounds {bounds:?}");
    assert!(bounds.max()[1] < 100.0, "the left axis keeps the current's scale: {bounds:?}");
    assert!((map.to_right(y) - speed).abs() < 1e-6);
    // Hovering the plot (at the newest data) reads true values with units.
    h.hover_at(egui::pos2(rect.right() - 3.0, rect.center().y));
    h.run_steps(2);
    let hover = h.state().plots.hover.clone().expect("a readout");
    let (_, v, unit) =
        hover.values.iter().find(|(k, _, _)| k == "left.speed_rpm").cloned().expect("speed in the readout");
    assert!(v > 900.0 && unit == "rpm", "{v} {unit} at t = {} s", hover.t_s);
    // The cursor readout too.
    h.get_by_label("Cursors").click();
    h.run_steps(1);
    let newest = h.state().bench.drives[0].telemetry().series("speed_rpm").unwrap().last().unwrap();
    h.state_mut().plots.cursors.a_s = newest.0;
    h.run_steps(1);
    let row = h.state().plots.cursor_rows.iter().find(|r| r.key == "left.speed_rpm").cloned().unwrap();
    assert_eq!(row.at_a, Some(newest.1), "{row:?}");
    assert!(newest.1 > 900.0);

    // Saved with the project and restored on open.
    let path = dir.path().join("bench.ron");
    assert!(h.state_mut().save_to(&path));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("right_signals"), "{text}");
    let back = Project::load(&path).unwrap();
    assert_eq!(back.plot.plots[1].right_signals, vec!["speed_rpm".to_owned()]);
    h.state_mut().plots.plots[1].right_signals.clear();
    assert!(h.state_mut().open_path(&path));
    h.run_steps(2);
    assert_eq!(h.state().plots.plots[1].right_signals, vec!["speed_rpm".to_owned()]);
}

/// Parses a CSV export: header and rows of optional cells.
fn read_csv(path: &std::path::Path) -> (Vec<String>, Vec<Vec<Option<f64>>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_owned).collect();
    let rows = lines
        .map(|l| {
            l.split(',').map(|c| if c.is_empty() { None } else { Some(c.parse::<f64>().unwrap()) }).collect()
        })
        .collect();
    (header, rows)
}

#[test]
fn csv_export_of_a_paused_window_holds_exactly_its_raw_samples() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(demo_app());
    step_until(&mut h, "demo drives connected", all_idle);
    enable_at(&mut h, 1, 600.0);
    step_until(&mut h, "1.5 s of history", |a| history_s(a) > 1.5);
    h.get_by_label_contains("left.current_setpoint_a").click();
    let now = h.state().bench.clock.now_s();
    let (t0, t1) = (now - 1.2, now - 0.2);
    h.state_mut().plots.show_range(t0, t1);
    h.run_steps(3);
    assert_eq!(h.state().plots.view_s, Some((t0, t1)));

    let path = dir.path().join("window.csv");
    let ctx = h.ctx.clone();
    let app = h.state_mut();
    app.plots.export_csv(&app.bench, &path, &ctx);
    step_until(&mut h, "the export", |a| a.plots.export_status.is_some());
    let status = h.state().plots.export_status.clone().unwrap();
    assert!(status.ok, "{status:?}");

    let (header, rows) = read_csv(&path);
    let expected: Vec<String> = std::iter::once("time_s".to_owned())
        .chain(
            ["left", "right"]
                .into_iter()
                .flat_map(|d| {
                    ["speed_rpm", "speed_setpoint_rpm", "current_a", "current_setpoint_a"]
                        .map(|s| format!("{d}.{s}"))
                })
                .filter(|k| k != "left.current_setpoint_a"),
        )
        .collect();
    assert_eq!(header, expected, "the shown traces, drive by drive");
    let times: Vec<f64> = rows.iter().map(|r| r[0].unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "rows in time order");
    // Written to the µs: every time is inside the window.
    assert!(times.iter().all(|&t| t >= t0 - 1e-6 && t < t1 + 1e-6));
    for (col, key) in header.iter().enumerate().skip(1) {
        let (drive, signal) = key.split_once('.').unwrap();
        let telemetry = h.state().bench.by_name(drive).unwrap().telemetry();
        let raw: Vec<(f64, f64)> = telemetry.series(signal).unwrap().samples_in(t0, t1).collect();
        let cells: Vec<(f64, f64)> = rows.iter().filter_map(|r| Some((r[0]?, r[col]?))).collect();
        assert_eq!(cells.len(), raw.len(), "{key}: every raw sample, not the decimated points");
        assert!(raw.len() > 900, "{key}: {} samples", raw.len());
        for ((tc, vc), (tr, vr)) in cells.iter().zip(&raw) {
            assert!((tc - tr).abs() < 1e-6 && vc == vr, "{key}: {tc},{vc} vs {tr},{vr}");
        }
    }
    // One row per drive frame.
    let left_rows = rows.iter().filter(|r| r[1].is_some()).count();
    let right_rows = rows.iter().filter(|r| r[4].is_some()).count();
    assert_eq!(rows.len(), left_rows + right_rows);
    assert!(h.query_by_label_contains("written to").is_some(), "the outcome is shown");

    // An unwritable path is an error on screen, not a panic.
    let ctx = h.ctx.clone();
    let app = h.state_mut();
    app.plots.export_status = None;
    app.plots.export_csv(&app.bench, std::path::Path::new("/nonexistent-dir/x.csv"), &ctx);
    step_until(&mut h, "the failed export", |a| a.plots.export_status.is_some());
    let status = h.state().plots.export_status.clone().unwrap();
    assert!(!status.ok && status.text.contains("/nonexistent-dir/x.csv"), "{status:?}");
    h.run_steps(2);
    assert!(h.query_by_label_contains("cannot create").is_some());
}

/// Answers the screenshot requested in the last frame with `image`.
fn answer_screenshot(h: &Harness<'_, BenchApp>, image: egui::ColorImage) -> bool {
    let image = std::sync::Arc::new(image);
    let mut answered = false;
    for viewport in h.output().viewport_output.values() {
        for command in &viewport.commands {
            if let egui::ViewportCommand::Screenshot(callback) = command {
                callback.clone().complete(image.clone());
                answered = true;
            }
        }
    }
    answered
}

#[test]
fn png_export_crops_the_window_screenshot_to_the_plot_stack() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(demo_app());
    step_until(&mut h, "samples arrive", |a| history_s(a) > 0.2);
    let path = dir.path().join("plots.png");
    h.state_mut().plots.export_png(&path);
    h.step();
    // The plot stack as laid out in the frame that asked for the screenshot.
    let rect = h.state().plots.stack_rect.unwrap();
    // A synthetic window image (no renderer here): each pixel encodes its position.
    let ppp = h.ctx.pixels_per_point();
    let (w, hgt) = ((1400.0 * ppp) as usize, (1000.0 * ppp) as usize);
    let mut image = egui::ColorImage::filled([w, hgt], egui::Color32::BLACK);
    for y in 0..hgt {
        for x in 0..w {
            image.pixels[y * w + x] = egui::Color32::from_rgb((x % 251) as u8, (y % 251) as u8, 77);
        }
    }
    assert!(answer_screenshot(&h, image), "a screenshot was requested");
    step_until(&mut h, "the PNG", |a| a.plots.export_status.is_some());
    let status = h.state().plots.export_status.clone().unwrap();
    assert!(status.ok, "{status:?}");
    let png = image::open(&path).unwrap().to_rgba8();
    let (x0, y0) = ((rect.min.x * ppp).round() as u32, (rect.min.y * ppp).round() as u32);
    assert_eq!(png.width(), (rect.max.x * ppp).round() as u32 - x0);
    assert_eq!(png.height(), (rect.max.y * ppp).round() as u32 - y0);
    assert!(png.width() > 600 && png.height() > 400, "{}×{}", png.width(), png.height());
    assert_eq!(png.get_pixel(0, 0).0, [(x0 % 251) as u8, (y0 % 251) as u8, 77, 255]);
    assert_eq!(png.get_pixel(10, 20).0, [((x0 + 10) % 251) as u8, ((y0 + 20) % 251) as u8, 77, 255]);

    // A screenshot that does not contain the plots: an error, shown.
    h.state_mut().plots.export_status = None;
    h.state_mut().plots.export_png(&dir.path().join("tiny.png"));
    h.step();
    assert!(answer_screenshot(&h, egui::ColorImage::filled([8, 8], egui::Color32::WHITE)));
    step_until(&mut h, "the failed PNG", |a| a.plots.export_status.is_some());
    assert!(!h.state().plots.export_status.as_ref().unwrap().ok);

    // A screenshot that never comes: the export gives up with a message, and a late image of
    // that request is not taken for the next one.
    h.state_mut().plots.export_status = None;
    let never = dir.path().join("never.png");
    h.state_mut().plots.export_png(&never);
    h.step();
    let abandoned: Vec<egui::ScreenshotCallback> = h
        .output()
        .viewport_output
        .values()
        .flat_map(|v| v.commands.iter())
        .filter_map(|c| if let egui::ViewportCommand::Screenshot(cb) = c { Some(cb.clone()) } else { None })
        .collect();
    assert_eq!(abandoned.len(), 1);
    step_until(&mut h, "giving up", |a| a.plots.export_status.is_some());
    let status = h.state().plots.export_status.clone().unwrap();
    assert!(!status.ok && status.text.contains("could not be captured"), "{status:?}");
    assert!(!never.exists());
    h.state_mut().plots.export_status = None;
    let next = dir.path().join("next.png");
    h.state_mut().plots.export_png(&next);
    h.step();
    abandoned[0]
        .clone()
        .complete(std::sync::Arc::new(egui::ColorImage::filled([8, 8], egui::Color32::WHITE)));
    let (w, hgt) = ((1400.0 * ppp) as usize, (1000.0 * ppp) as usize);
    assert!(answer_screenshot(&h, egui::ColorImage::filled([w, hgt], egui::Color32::from_rgb(1, 2, 3))));
    step_until(&mut h, "the next PNG", |a| a.plots.export_status.is_some());
    let status = h.state().plots.export_status.clone().unwrap();
    assert!(status.ok, "the late 8×8 image was used: {status:?}");
    assert_eq!(image::open(&next).unwrap().to_rgba8().get_pixel(0, 0).0, [1, 2, 3, 255]);
}

#[test]
fn whole_history_and_show_range_pause_on_exactly_that_span_down_to_single_samples() {
    let mut h = harness(demo_app());
    step_until(&mut h, "1 s of history", |a| history_s(a) > 1.0);
    h.get_by_label("Whole history").click();
    h.run_steps(2);
    let plots = &h.state().plots;
    assert!(!plots.follow);
    let view = plots.view_s.unwrap();
    let oldest = h
        .state()
        .bench
        .drives
        .iter()
        .filter_map(|d| d.telemetry().time_span())
        .map(|s| s.0)
        .fold(f64::INFINITY, f64::min);
    let newest = h.state().bench.clock.now_s();
    assert_eq!(view.0, oldest, "from the oldest sample");
    assert!(view.1 <= newest && view.1 > newest - 1.0, "to the newest sample at the click: {view:?}");
    assert!(h.state().plots.points_last_frame > 0);

    // Zoomed down to three samples: exactly that range, and the traces still drawn.
    let t = view.0 + 0.5;
    h.state_mut().plots.show_range(t, t + 0.0025);
    h.run_steps(2);
    assert_eq!(h.state().plots.view_s, Some((t, t + 0.0025)));
    let points = h.state().plots.points_last_frame;
    assert!(points > 0 && points < 200, "{points} points for a few samples per trace");
    h.run_steps(5);
    assert_eq!(h.state().plots.view_s, Some((t, t + 0.0025)), "the range stays put while paused");
}
