//! UI flows driven through egui_kittest, with real simulated drives behind the panels:
//! no display and no GPU needed.

use std::time::{Duration, Instant};

use drivebench::drive::{ControlMode, DriveState};
use drivebench::project::Project;
use drivebench::ui::BenchApp;
use egui::{Key, Role};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

mod common;
use common::{harness, step_until};

/// Replaces the text of the input labelled `label` and presses Enter, as a user would.
fn type_into(h: &mut Harness<'_, BenchApp>, label: &str, text: &str) {
    h.get_by_role_and_label(Role::TextInput, label).focus();
    h.step();
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::A);
    h.step();
    h.get_by_role_and_label(Role::TextInput, label).type_text(text);
    h.step();
    h.key_press(Key::Enter);
}

fn demo_app() -> BenchApp {
    BenchApp::new(Project::demo(), None, None)
}

fn all_idle(app: &BenchApp) -> bool {
    app.bench.drives.iter().all(|d| d.state == DriveState::Idle)
}

#[test]
fn add_a_drive_enable_it_and_set_a_speed() {
    let mut h = harness(demo_app());
    step_until(&mut h, "demo drives connected", all_idle);

    h.get_by_label("➕ Add simulated drive").click();
    step_until(&mut h, "third drive connected", |a| {
        a.bench.drives.len() == 3 && a.bench.drives[2].state == DriveState::Idle
    });
    let new_id = h.state().bench.drives[2].id;
    assert_eq!(h.state().selected, Some(new_id), "the new drive is selected");
    assert_eq!(h.state().bench.drives[2].name(), "drive1");

    h.get_by_label("Enable").click();
    step_until(&mut h, "enabled", |a| a.bench.drives[2].state == DriveState::Enabled);
    assert_eq!(h.state().bench.drives[2].mode, ControlMode::Speed);

    type_into(&mut h, "Setpoint:", "1000");
    step_until(&mut h, "setpoint applied", |a| a.bench.drives[2].setpoint == 1000.0);

    // The plot store fills, and the motor follows the setpoint.
    let before =
        h.state().bench.drives[2].telemetry().series("speed_rpm").map(|s| s.total_pushed()).unwrap_or(0);
    step_until(&mut h, "300 more samples", |a| {
        a.bench.drives[2].telemetry().series("speed_rpm").is_some_and(|s| s.total_pushed() >= before + 300)
    });
    let telemetry = h.state().bench.drives[2].telemetry();
    let speed = telemetry.series("speed_rpm").unwrap();
    let (t_last, _) = speed.last().unwrap();
    let (lo, hi) = speed.min_max(t_last - 0.1, t_last + 1.0).unwrap();
    assert!(lo > 980.0 && hi < 1020.0, "speed over the last 100 ms: {lo} … {hi} rpm");
    assert!(h.state().plots.points_last_frame > 0, "the plots drew nothing");
}

#[test]
fn estop_button_and_key_disable_every_drive() {
    let mut h = harness(demo_app());
    step_until(&mut h, "demo drives connected", all_idle);
    for d in &mut h.state_mut().bench.drives {
        d.send(drivebench::drive::Command::Enable).unwrap();
        d.send(drivebench::drive::Command::SetSetpoint(ControlMode::Speed, 500.0)).unwrap();
    }
    step_until(&mut h, "all enabled", |a| a.bench.drives.iter().all(|d| d.state == DriveState::Enabled));

    h.get_by_label("E-STOP").click();
    step_until(&mut h, "all stopped by the button", all_idle);
    // The setpoints went to zero with the stop: re-enabling must not resume the old speed.
    step_until(&mut h, "setpoints reported as zero", |a| a.bench.drives.iter().all(|d| d.setpoint == 0.0));
    h.run_steps(2);
    let text = h.get_by_role_and_label(Role::TextInput, "Setpoint:").value();
    assert_eq!(text.as_deref(), Some("0"), "the setpoint field still shows the old value");

    for d in &mut h.state_mut().bench.drives {
        d.send(drivebench::drive::Command::Enable).unwrap();
    }
    step_until(&mut h, "all enabled again", |a| {
        a.bench.drives.iter().all(|d| d.state == DriveState::Enabled)
    });
    h.key_press(Key::Escape);
    step_until(&mut h, "all stopped by the key", all_idle);
    assert!(h.state().status.last_estop_s.is_some());
}

#[test]
fn out_of_range_parameter_is_refused_with_a_reason_and_never_sent() {
    let mut h = harness(demo_app());
    step_until(&mut h, "parameters read", |a| a.bench.drives[0].values.contains_key("current_limit_a"));
    let before = h.state().bench.drives[0].values["current_limit_a"];
    let label = h.state().bench.drives[0].param_spec("current_limit_a").unwrap().label.clone();

    // 9 A is inside the drive's own range but above the project's 8 A limit.
    type_into(&mut h, &label, "9");
    h.run_steps(3);
    let id = h.state().bench.drives[0].id;
    let err = h.state().params.error_for(id, "current_limit_a").expect("a visible refusal").to_owned();
    assert!(err.contains("project limit"), "{err}");
    assert!(h.query_all_by_label_contains("project limit").count() >= 1, "the reason is on screen");

    // Nothing went out: the value read back from the drive is unchanged and the project keeps none.
    h.state_mut().bench.drives[0].send(drivebench::drive::Command::ReadAllParams).unwrap();
    h.run_steps(20);
    assert_eq!(h.state().bench.drives[0].values["current_limit_a"], before);
    assert!(!h.state().bench.drives[0].config.params.contains_key("current_limit_a"));
}

#[test]
fn save_then_load_through_the_menu_code_and_broken_files_leave_the_bench_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.ron");
    let mut h = harness(demo_app());
    step_until(&mut h, "demo drives connected", all_idle);
    h.state_mut().plots.window_s = 4.5;
    h.state_mut().bench.drives[1].config.limits.max_speed_rpm = 3500.0;
    assert!(h.state_mut().save_to(&path));
    let saved = h.state().current_project();

    // Change the bench, then open the file again.
    h.get_by_label("➕ Add simulated drive").click();
    h.run_steps(2);
    assert_eq!(h.state().bench.drives.len(), 3);
    assert!(h.state_mut().open_path(&path));
    h.run_steps(2);
    assert_eq!(h.state().bench.drives.len(), 2);
    assert_eq!(h.state().current_project(), saved);
    assert_eq!(h.state().plots.window_s, 4.5);
    assert_eq!(h.state().recent.first(), Some(&path));

    // A malformed file: error with line and column, bench untouched.
    let bad = dir.path().join("bad.ron");
    std::fs::write(&bad, "Project(\n  version: 1,\n  drives: [ nonsense ],\n)").unwrap();
    let ids: Vec<u64> = h.state().bench.drives.iter().map(|d| d.id).collect();
    assert!(!h.state_mut().open_path(&bad));
    h.run_steps(2);
    let notice = h.state().notice.clone().expect("an error is shown");
    assert!(notice.text.contains("bad.ron:3:"), "{}", notice.text);
    assert!(h.query_by_label_contains("bad.ron:3:").is_some());
    let ids_after: Vec<u64> = h.state().bench.drives.iter().map(|d| d.id).collect();
    assert_eq!(ids, ids_after);

    // An unknown version is refused by name.
    let newer = dir.path().join("newer.ron");
    std::fs::write(&newer, "Project(version: 99)").unwrap();
    assert!(!h.state_mut().open_path(&newer));
    assert!(h.state().notice.as_ref().unwrap().text.contains("version 99"));

    // A file of the older format opens through its migration, and says so.
    let old = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/project-v1.ron");
    assert!(h.state_mut().open_path(&old));
    h.run_steps(2);
    let notice = h.state().notice.clone().expect("the conversion is shown");
    assert_eq!(notice.title, "Project converted");
    assert!(!notice.error, "information, not an error");
    assert!(h.query_by_label("The bench was left as it was.").is_none());
    assert!(notice.text.contains("version 1") && notice.text.contains("version 2"), "{}", notice.text);
    assert!(h.query_by_label_contains("converted to version 2").is_some());
    let names: Vec<String> = h.state().bench.drives.iter().map(|d| d.name().to_owned()).collect();
    assert_eq!(names, ["left", "odrive0"]);
}

#[test]
fn a_lost_link_is_shaded_in_the_plots_of_that_drive() {
    let mut h = harness(demo_app());
    step_until(&mut h, "samples arrive", |a| a.bench.drives.iter().all(|d| d.rate_hz() > 0.0));
    h.run_steps(2);
    assert!(h.state().plots.gaps_last_frame.is_empty());
    // The worker marks a lost link this way; the right drive carries on.
    let lost_at = h.state().bench.clock.now_s();
    h.state().bench.drives[0].telemetry().mark_gap(lost_at);
    h.run_steps(2);
    let gaps = h.state().plots.gaps_last_frame.clone();
    let plots = h.state().plots.plots.len();
    assert_eq!(gaps.len(), plots, "one shaded interval per plot: {gaps:?}");
    assert!(gaps.iter().all(|(drive, start, end)| drive == "left" && *start == lost_at && end >= start));
    // Samples again: the interval closes at the first of them and stays shaded while in view.
    step_until(&mut h, "the gap closes", |a| {
        a.bench.drives[0].telemetry().gaps_in(0.0, f64::INFINITY).all(|(_, end)| end.is_some())
    });
    h.run_steps(2);
    let gaps = h.state().plots.gaps_last_frame.clone();
    assert_eq!(gaps.len(), plots);
    // (Samples already on their way when the mark was made may close it at once.)
    assert!(
        gaps.iter().all(|(_, start, end)| *start == lost_at && *end >= lost_at && *end < lost_at + 1.0),
        "{gaps:?}"
    );
    // A hidden drive's gaps are not drawn.
    for signal in ["speed_rpm", "speed_setpoint_rpm", "current_a", "current_setpoint_a"] {
        h.state_mut().plots.hidden.insert(format!("left.{signal}"));
    }
    h.run_steps(2);
    assert!(h.state().plots.gaps_last_frame.is_empty());
}

#[test]
fn legend_hides_a_trace_and_pausing_freezes_the_view() {
    let mut h = harness(demo_app());
    step_until(&mut h, "samples arrive", |a| a.bench.drives.iter().all(|d| d.rate_hz() > 0.0));
    h.run_steps(2);
    let shown = h.state().plots.points_last_frame;
    assert!(shown > 0);
    h.get_by_label_contains("left.speed_rpm").click();
    h.run_steps(2);
    assert!(h.state().plots.hidden.contains("left.speed_rpm"));
    assert!(h.state().plots.points_last_frame < shown);

    h.get_by_label("⏸ Pause").click();
    h.run_steps(2);
    assert!(!h.state().plots.follow);
    h.get_by_label("▶ Follow").click();
    h.run_steps(2);
    assert!(h.state().plots.follow);
}

#[test]
fn dragging_a_plot_pauses_following_and_hover_reads_values() {
    let mut h = harness(demo_app());
    step_until(&mut h, "samples arrive", |a| a.bench.drives.iter().all(|d| d.rate_hz() > 0.0));
    assert!(h.state().plots.follow);
    // The plot's title (the leftmost "Speed"; the control panel's readout has one too).
    let header =
        h.get_all_by_label("Speed").map(|n| n.rect()).min_by(|a, b| a.min.x.total_cmp(&b.min.x)).unwrap();
    let inside = header.center() + egui::vec2(250.0, 150.0);
    h.hover_at(inside);
    h.step();
    assert!(h.state().plots.hover.is_some(), "hovering a plot gives a readout");
    h.drag_at(inside);
    h.step();
    h.hover_at(inside + egui::vec2(-120.0, 0.0));
    h.step();
    h.drop_at(inside + egui::vec2(-120.0, 0.0));
    h.step();
    assert!(!h.state().plots.follow, "panning the plot should pause following");
    h.hover_at(inside);
    h.run_steps(2);
    let readout = h.state().plots.hover.clone();
    // The readout lists the traces under the pointer with their units.
    let readout = readout.expect("a readout while hovering");
    assert!(
        readout.values.iter().any(|(name, _, unit)| name.starts_with("left.") && !unit.is_empty()),
        "{readout:?}"
    );
    assert!(readout.values.iter().any(|(name, _, _)| name.starts_with("right.")), "{readout:?}");
}

/// A SimpleFOC drive emulated on a pseudo-terminal in this process, stopped when dropped.
struct EmulatedDrive {
    path: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmulatedDrive {
    fn start() -> EmulatedDrive {
        EmulatedDrive::start_with(drivebench::protocol::Protocol::SimpleFoc { motor: 'M' })
    }

    fn start_with(protocol: drivebench::protocol::Protocol) -> EmulatedDrive {
        let mut emu =
            drivebench::sim::emulator::Emulator::new(&protocol, 200.0, &Default::default()).unwrap();
        let path = emu.path().to_owned();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let _ = emu.run(&flag);
        });
        EmulatedDrive { path, stop, thread: Some(thread) }
    }
}

impl Drop for EmulatedDrive {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn serial_drive_through_the_dialog_and_its_console() {
    let emu = EmulatedDrive::start();
    let mut h = harness(demo_app());
    step_until(&mut h, "demo drives connected", all_idle);

    h.get_by_label("➕ Add serial drive…").click();
    h.run_steps(2);
    type_into(&mut h, "Port", &emu.path);
    h.run_steps(1);
    h.get_by_label("Add and connect").click();
    step_until(&mut h, "the serial drive connected and read", |a| {
        a.bench.drives.len() == 3 && {
            let d = &a.bench.drives[2];
            d.state == DriveState::Idle && !d.catalogue.is_empty() && d.values.contains_key("velocity_kp")
        }
    });
    let id = h.state().bench.drives[2].id;
    assert_eq!(h.state().selected, Some(id));
    assert!(h.state().bench.drives[2].config.connection.describe().contains(&emu.path));

    // The console shows the set-up traffic; a raw read goes out and its reply comes back.
    h.run_steps(2);
    assert!(h.query_by_label_contains("Console — drive1").is_some());
    type_into(&mut h, "Send:", "MVP");
    step_until(&mut h, "the reply to MVP", |a| {
        let c = &a.bench.drives[2].console;
        let sent = c.entries().position(|e| e.dir == drivebench::drive::Direction::Tx && e.bytes == b"MVP\n");
        sent.is_some_and(|i| {
            c.entries().skip(i).any(|e| {
                e.dir == drivebench::drive::Direction::Rx
                    && String::from_utf8_lossy(&e.bytes).starts_with("MVP")
            })
        })
    });
    h.get_by_label("Hex").click();
    h.run_steps(2);
    // Every row in view is now bytes in hex (the stream keeps the newest rows in view).
    let rows: Vec<String> = h.query_all_by_label_contains(" ← ").filter_map(|n| n.value()).collect();
    assert!(!rows.is_empty(), "no console rows in view");
    for row in &rows {
        let body = row.split(" ← ").nth(1).unwrap_or("");
        let hex = body.split(' ').all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(hex, "not hex: {row}");
    }
    assert_eq!(drivebench::console::as_hex(b"MVP\n"), "4D 56 50 0A");

    // A raw target beyond the project limits is refused on screen and never written.
    type_into(&mut h, "Send:", "M500");
    step_until(&mut h, "the refusal", |a| {
        a.bench.drives[2].last_message().is_some_and(|m| m.starts_with("console line `M500`"))
    });
    h.run_steps(2);
    assert!(h.query_all_by_label_contains("not sent").count() >= 1, "the reason is on screen");
    assert!(!h.state().bench.drives[2].console.entries().any(|e| e.bytes == b"M500\n"));

    // Pausing the capture holds the view still.
    h.get_by_label("⏸ Pause capture").click();
    h.run_steps(2);
    let held = h.state().bench.drives[2].console.len();
    h.run_steps(20);
    std::thread::sleep(Duration::from_millis(100));
    h.run_steps(5);
    assert_eq!(h.state().bench.drives[2].console.len(), held);
    assert!(h.state().bench.drives[2].console.missed() > 0, "the stream kept coming while paused");
}

#[test]
fn a_sketchs_plotter_lines_show_without_set_up() {
    let emu = EmulatedDrive::start_with(drivebench::protocol::Protocol::Plotter);
    let mut h = harness(demo_app());
    step_until(&mut h, "demo drives connected", all_idle);
    let connection = drivebench::project::SerialConnection {
        link: drivebench::link::SerialSettings::new(&emu.path, 115_200),
        protocol: drivebench::protocol::Protocol::Plotter,
    };
    h.state_mut().add_serial_drive("sketch".into(), connection);
    step_until(&mut h, "the sketch's five signals", |a| a.bench.drives[2].signals.len() == 5);
    h.run_steps(3);
    let plots = &h.state().plots.plots;
    let plot_of =
        |signal: &str| plots.iter().find(|p| p.signals.iter().any(|s| s == signal)).map(|p| p.title.clone());
    // Into the plot of their unit where there is one, else into a new "Telemetry" plot.
    assert_eq!(plot_of("speed_rpm").as_deref(), Some("Speed"));
    assert_eq!(plot_of("current_a").as_deref(), Some("Current"));
    for extra in ["voltage_v", "temperature_c", "position_rev"] {
        assert_eq!(plot_of(extra).as_deref(), Some("Telemetry"), "{extra}");
    }
    // Telemetry only: no Enable button for it; its readouts are shown.
    assert!(h.query_by_label("Enable").is_none());
    assert!(h.query_by_label_contains("Telemetry only").is_some());
    assert!(h.query_by_label("Bus voltage").is_some());
}

#[test]
fn record_a_run_then_open_the_recording_beside_the_live_drives() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = demo_app();
    // The Record button writes into recordings/ beside the project file.
    app.project_path = Some(dir.path().join("bench.ron"));
    let mut h = harness(app);
    step_until(&mut h, "demo drives connected", all_idle);
    step_until(&mut h, "signals announced", |a| a.bench.drives.iter().all(|d| !d.signals.is_empty()));
    h.get_by_label("⏺ Record").click();
    h.step();
    assert!(h.state().bench.recording().is_some(), "recording started");
    let path = h.state().bench.recording().unwrap().path().to_owned();
    assert!(path.starts_with(dir.path().join("recordings")), "{}", path.display());
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    // The indicator shows elapsed time and size while recording.
    let indicator = h.query_by_label_contains("REC 00:01").expect("recording indicator with elapsed time");
    let text = indicator.value().unwrap_or_default();
    assert!(text.ends_with(" MB"), "{text}");
    h.get_by_label("⏹ Stop recording").click();
    h.step();
    assert!(h.state().bench.recording().is_none());
    let last = h.state().last_recording.clone().unwrap();
    assert!(last.contains("recorded") && last.contains(&path.display().to_string()), "{last}");

    // Rows per drive in the file.
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let speed_col = headers.iter().position(|c| c == "left.speed_rpm").unwrap();
    let rows = reader.records().filter(|r| !r.as_ref().unwrap()[speed_col].is_empty()).count();
    assert!(rows > 1000, "{rows} rows of left in 1.2 s at 1 kHz");

    h.state_mut().open_recording(&path);
    step_until(&mut h, "the recording's drives appear", |a| a.bench.drives.len() == 4);
    let app = h.state();
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let rec = app.bench.by_name(&format!("left [{stem}]")).expect("recorded drive named after its file");
    assert!(rec.is_recorded() && !rec.can_control());
    assert_eq!(rec.telemetry().series("speed_rpm").unwrap().len(), rows);
    assert_eq!(rec.signal_unit("speed_rpm"), Some("rpm"));
    // A recording is not part of the bench set-up.
    assert_eq!(app.current_project().drives.len(), 2);
    // The plots pause on the recording's whole span.
    assert!(!app.plots.follow, "opening a recording shows it, not the live edge");
}

#[test]
fn the_history_setting_resizes_the_stores_and_goes_into_the_project() {
    let mut h = harness(demo_app());
    step_until(&mut h, "demo drives connected", all_idle);
    step_until(&mut h, "samples arrive", |a| {
        a.bench.drives[0].telemetry().series("speed_rpm").is_some_and(|s| s.len() > 100)
    });
    h.get_by_role_and_label(Role::Button, "Drives").click();
    h.step();
    h.step();
    h.get_by_label("History…").click();
    h.step();
    h.step();
    h.get_by_role_and_label(Role::SpinButton, "Keep:").focus();
    h.step();
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::A);
    h.get_by_role_and_label(Role::SpinButton, "Keep:").type_text("2");
    h.key_press(Key::Enter);
    h.step();
    h.get_by_role_and_label(Role::Window, "History").get_by_label("Apply").click();
    h.step();
    let app = h.state();
    assert_eq!(app.bench.history_capacity(), 120_000);
    assert_eq!(app.current_project().history.samples_per_signal, 120_000);
    assert!(app.bench.drives.iter().all(|d| d.telemetry().capacity() == 120_000));
    // What was stored is kept.
    assert!(app.bench.drives[0].telemetry().series("speed_rpm").unwrap().len() > 100);
    h.step();
    assert!(h.query_by_role_and_label(Role::Window, "History").is_none(), "the window closed");
}

#[test]
fn quitting_with_an_enabled_drive_asks_first_and_disables_it() {
    let mut h = harness(demo_app());
    step_until(&mut h, "demo drives connected", all_idle);
    // Nothing enabled: the window may close at once.
    assert!(h.state_mut().close_requested());
    h.state_mut().bench.drives[0].send(drivebench::drive::Command::Enable).unwrap();
    step_until(&mut h, "enabled", |a| a.bench.drives[0].state == DriveState::Enabled);
    assert!(!h.state_mut().close_requested(), "held while a drive is enabled");
    h.step();
    h.step();
    assert!(h.query_by_label_contains("Quit with drives enabled?").is_some());
    assert!(h.query_by_label_contains("Enabled: left").is_some());
    h.get_by_label("Cancel").click();
    h.step();
    h.step();
    assert!(h.query_by_label_contains("Quit with drives enabled?").is_none());
    assert_eq!(h.state().bench.drives[0].state, DriveState::Enabled, "Cancel leaves the drive as it was");
    assert!(!h.state_mut().close_requested());
    h.step();
    h.step();
    h.get_by_label("Disable all and quit").click();
    h.step();
    assert!(h.state().quit_approved);
    step_until(&mut h, "disabled", |a| a.bench.drives.iter().all(|d| d.state != DriveState::Enabled));
    assert!(h.state_mut().close_requested());
}

#[test]
fn unsaved_changes_are_autosaved_and_offered_back_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // A session with an unsaved change that never exits cleanly.
    let mut crashed = demo_app();
    crashed.enable_autosave(state.clone());
    assert!(crashed.restore_offer.is_none());
    crashed.add_simulated_drive();
    assert!(crashed.has_unsaved_changes());
    crashed.autosave_now();
    assert!(drivebench::project::autosave_path(&state).exists());
    drop(crashed);

    // The next start offers it back; Restore brings the bench with its three drives.
    let mut app = BenchApp::new(Project::default(), None, None);
    app.enable_autosave(state.clone());
    let mut h = harness(app);
    h.step();
    h.step();
    assert!(h.query_by_label_contains("did not close cleanly").is_some());
    h.get_by_label("Restore").click();
    h.step();
    let app = h.state();
    assert_eq!(app.bench.drives.len(), 3);
    assert!(app.has_unsaved_changes(), "restored changes are still unsaved");
    // Saving makes them saved: the autosave goes.
    let saved = dir.path().join("bench.ron");
    assert!(h.state_mut().save_to(&saved));
    assert!(!drivebench::project::autosave_path(&state).exists());

    // A clean exit leaves nothing to offer.
    let mut clean = demo_app();
    clean.enable_autosave(state.clone());
    clean.add_simulated_drive();
    clean.autosave_now();
    clean.clean_exit();
    let mut next = demo_app();
    next.enable_autosave(state);
    assert!(next.restore_offer.is_none());
}
