//! The drivebench command line: the GUI (default), `--screenshot`, `record`, `params`,
//! `ports` and `emulate`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use drivebench::drive::ControlMode;
use drivebench::headless::{self, ParamOptions, RecordOptions};
use drivebench::project::{Project, parse_drive_spec};
use drivebench::protocol::Protocol;
use drivebench::sim::SimConfig;
use drivebench::sim::emulator::Emulator;
use drivebench::ui::app::Notice;
use drivebench::ui::{DrivebenchApp, ScreenshotPlan};

#[derive(Parser)]
#[command(
    name = "drivebench",
    version,
    about = "Commission and monitor motor drives: several drives, one time base, one e-stop"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    /// Project file to open (default: the built-in demo bench of two simulated drives).
    project: Option<PathBuf>,
    /// Open the window, enable the drives, run a speed step, save a PNG of the window, exit.
    #[arg(long, value_name = "OUT.png")]
    screenshot: Option<PathBuf>,
    /// Frames to render before the screenshot.
    #[arg(long, default_value_t = 120, requires = "screenshot")]
    frames: u64,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run drives headless for a while and record every sample to CSV.
    Record(RecordArgs),
    /// Read and write one drive's parameters, through the same checks as the app.
    Params(ParamsArgs),
    /// List the serial ports of this machine.
    Ports,
    /// Serve a simulated drive on a pseudo-terminal, speaking a serial protocol. Prints the
    /// device path to connect to as the first line, then serves until killed. SIGUSR1 makes
    /// the drive latch a fault.
    Emulate(EmulateArgs),
    /// End-to-end load test: N emulated Serial Plotter drives (each line numbered) on
    /// pseudo-terminals, the window open, everything recorded; proves from the line counters
    /// that nothing was lost and reports UI CPU per frame and process CPU. Run it in a desktop
    /// session or under xvfb-run. Exits non-zero if any line was lost.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    #[arg(long, default_value_t = 8)]
    drives: usize,
    /// Lines per second per drive.
    #[arg(long, default_value_t = 1000.0, value_name = "HZ")]
    rate: f64,
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// The recording (default: drivebench-load.csv in the temporary directory).
    #[arg(long, value_name = "OUT.csv")]
    csv: Option<PathBuf>,
    /// Minimise the window from A to B seconds into the run (repeatable), e.g. `60-240`.
    #[arg(long, value_name = "A-B")]
    minimize: Vec<String>,
    /// Soak: kill one emulator (in turn) every S seconds, start it again 2 s later.
    #[arg(long, value_name = "S")]
    disconnect_every: Option<f64>,
    /// Do not record (a long soak would write gigabytes).
    #[arg(long)]
    no_record: bool,
    /// Samples kept per signal (default: the whole run).
    #[arg(long, value_name = "N")]
    history: Option<usize>,
}

#[derive(clap::Args)]
struct ParamsArgs {
    /// The drive: `sim[,…]` or `PROTOCOL:PATH[@BAUD][,key=value…]`.
    #[arg(long = "drive", value_name = "SPEC")]
    drive: String,
    /// List the whole catalogue with values, units, ranges.
    #[arg(long)]
    list: bool,
    /// Read a parameter (after any writes). Repeatable.
    #[arg(long = "get", value_name = "KEY")]
    gets: Vec<String>,
    /// Write a parameter, checked against the drive's limits first. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", allow_hyphen_values = true)]
    sets: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProtocolArg {
    Plotter,
    Simplefoc,
    Odrive,
    Vesc,
    Modbus,
}

#[derive(clap::Args)]
struct EmulateArgs {
    #[arg(long, value_enum)]
    protocol: ProtocolArg,
    /// Telemetry lines per second for the streaming protocols (plotter, simplefoc).
    #[arg(long, default_value_t = 100.0, value_name = "HZ")]
    rate: f64,
    /// SimpleFOC: the command id the motor is registered under.
    #[arg(long, default_value_t = 'M')]
    motor: char,
    /// VESC: motor pole pairs (electrical rpm = mechanical rpm × pole pairs).
    #[arg(long, default_value_t = 7)]
    pole_pairs: u32,
    /// Modbus: the unit address the drive answers to.
    #[arg(long, default_value_t = 1)]
    unit: u8,
    /// Plotter: end each line with `seq:N`, a line counter that proves no line was lost.
    #[arg(long)]
    counter: bool,
    /// Also make PATH a symbolic link to the pseudo-terminal (replacing an old link), so a
    /// restarted emulator is found at the same place, as a re-plugged adapter would be.
    #[arg(long, value_name = "PATH")]
    link: Option<PathBuf>,
    /// Seed of the simulated drive's measurement noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args)]
struct RecordArgs {
    /// Project file whose drives to run.
    project: Option<PathBuf>,
    /// A drive to add: `sim[,name=NAME][,seed=N]` or `PROTOCOL:PATH[@BAUD][,key=value…]`
    /// (protocols: plotter, simplefoc, odrive, vesc, modbus). Repeat for several drives.
    #[arg(long = "drive", value_name = "SPEC")]
    drives: Vec<String>,
    /// How long to record, in seconds.
    #[arg(long)]
    seconds: f64,
    /// Output CSV file.
    #[arg(long, value_name = "OUT.csv")]
    csv: PathBuf,
    /// Enable every drive after connecting.
    #[arg(long)]
    enable: bool,
    /// Control mode to select on every drive.
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// Setpoint in the mode's unit (A, rpm or rev), checked against each drive's limits.
    #[arg(long, allow_hyphen_values = true)]
    setpoint: Option<f64>,
    /// Seconds after the start at which the setpoint is applied.
    #[arg(long, default_value_t = 0.0, value_name = "T")]
    step_at: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Current,
    Speed,
    Position,
}

impl From<ModeArg> for ControlMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Current => ControlMode::Current,
            ModeArg::Speed => ControlMode::Speed,
            ModeArg::Position => ControlMode::Position,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The log for bug reports; the bench runs without it if its place is not writable.
    if !matches!(cli.command, Some(Cmd::Emulate(_)) | Some(Cmd::Ports))
        && let Some(dir) = drivebench::logfile::default_dir()
        && let Err(e) = drivebench::logfile::init(&dir)
    {
        eprintln!("drivebench: no log file: {e}");
    }
    let result = match cli.command {
        Some(Cmd::Record(args)) => record(args),
        Some(Cmd::Params(args)) => params(args),
        Some(Cmd::Ports) => ports(),
        Some(Cmd::Emulate(args)) => emulate(args),
        Some(Cmd::Bench(args)) => load_bench(args),
        None => gui(cli.project.as_deref(), cli.screenshot, cli.frames),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drivebench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The project named on the command line (a file of an older format version is converted,
/// and said so on stderr), or the demo bench.
fn load_project(path: Option<&Path>) -> Result<Project> {
    Ok(load_project_noting(path)?.0)
}

fn load_project_noting(path: Option<&Path>) -> Result<(Project, Option<drivebench::project::Migration>)> {
    match path {
        Some(p) => {
            let (project, migration) = Project::load_noting(p)?;
            if let Some(m) = &migration {
                eprintln!("drivebench: {}: {m}", p.display());
            }
            Ok((project, migration))
        }
        None => Ok((Project::demo(), None)),
    }
}

fn gui(path: Option<&Path>, screenshot: Option<PathBuf>, frames: u64) -> Result<()> {
    // A broken file named on the command line: the screenshot run fails, while the GUI opens
    // on an empty bench and shows why, as File > Open would.
    let (project, path, notice) = match load_project_noting(path) {
        Ok((project, migration)) => {
            let notice = migration.map(|m| Notice {
                title: "Project converted".into(),
                text: format!("{}: {m}", path.map(|p| p.display().to_string()).unwrap_or_default()),
                error: false,
            });
            (project, path.map(Path::to_owned), notice)
        }
        Err(e) if screenshot.is_none() => {
            eprintln!("drivebench: {e:#}");
            (
                Project::default(),
                None,
                Some(Notice { title: "Cannot open project".into(), text: format!("{e:#}"), error: true }),
            )
        }
        Err(e) => return Err(e),
    };
    let result: drivebench::ui::ScreenshotResult = Arc::new(Mutex::new(None));
    let plan = screenshot.map(|out| ScreenshotPlan { out, frames, result: result.clone() });
    let taking_screenshot = plan.is_some();
    let icon = eframe::icon_data::from_png_bytes(include_bytes!("../assets/icon.png")).ok();
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("drivebench")
        .with_inner_size([1280.0, 800.0])
        .with_min_inner_size([800.0, 500.0]);
    if let Some(icon) = icon {
        viewport = viewport.with_icon(icon);
    }
    let options = eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Glow,
        // A screenshot run must not disturb (or depend on) the user's saved window state.
        persist_window: !taking_screenshot,
        ..Default::default()
    };
    eframe::run_native(
        "drivebench",
        options,
        Box::new(move |cc| {
            let mut app = DrivebenchApp::new(cc, project, path, plan);
            app.app.notice = notice;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
    if taking_screenshot {
        let outcome = result.lock().map_err(|_| anyhow::anyhow!("screenshot state poisoned"))?.take();
        match outcome {
            Some(Ok(path)) => println!("screenshot saved to {}", path.display()),
            Some(Err(e)) => bail!("screenshot failed: {e}"),
            None => bail!("the window closed before the screenshot was taken"),
        }
    }
    Ok(())
}

fn record(args: RecordArgs) -> Result<()> {
    let mut project = match &args.project {
        Some(p) => load_project(Some(p))?,
        None => Project::default(),
    };
    let first = project.drives.len();
    for (i, spec) in args.drives.iter().enumerate() {
        let drive = parse_drive_spec(spec, first + i).with_context(|| format!("--drive {spec}"))?;
        project.drives.push(drive);
    }
    project.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let opts = RecordOptions {
        seconds: args.seconds,
        csv: args.csv.clone(),
        enable: args.enable,
        mode: args.mode.map(Into::into),
        setpoint: args.setpoint,
        step_at_s: args.step_at,
    };
    let summaries = headless::record(&project, &opts)?;
    for s in &summaries {
        eprintln!("{}: {} rows, {} dropped, {}", s.name, s.rows, s.dropped, s.state.label());
    }
    eprintln!("wrote {}", args.csv.display());
    Ok(())
}

fn params(args: ParamsArgs) -> Result<()> {
    let drive = parse_drive_spec(&args.drive, 0).with_context(|| format!("--drive {}", args.drive))?;
    let project = Project { drives: vec![drive.clone()], ..Project::default() };
    project.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut sets = Vec::new();
    for s in &args.sets {
        let (key, value) = s.split_once('=').with_context(|| format!("--set {s}: expected KEY=VALUE"))?;
        let value: f64 =
            value.trim().parse().with_context(|| format!("--set {s}: `{value}` is not a number"))?;
        sets.push((key.trim().to_owned(), value));
    }
    if sets.is_empty() && args.gets.is_empty() && !args.list {
        bail!("nothing to do: give --list, --get KEY or --set KEY=VALUE");
    }
    let opts = ParamOptions { list: args.list, gets: args.gets, sets };
    for line in headless::params(&drive, &opts)? {
        println!("{line}");
    }
    Ok(())
}

fn ports() -> Result<()> {
    let ports = drivebench::link::list_ports().map_err(|e| anyhow::anyhow!(e))?;
    if ports.is_empty() {
        println!("no serial ports found (pseudo-terminals are never listed: give their path directly)");
    }
    for p in ports {
        println!("{}\t{}", p.path, p.description);
    }
    Ok(())
}

fn emulate(args: EmulateArgs) -> Result<()> {
    use std::io::Write as _;
    let protocol = match args.protocol {
        ProtocolArg::Plotter => Protocol::Plotter,
        ProtocolArg::Simplefoc => Protocol::SimpleFoc { motor: args.motor },
        ProtocolArg::Odrive => Protocol::ODrive { axis: 0, checksum: false },
        ProtocolArg::Vesc => Protocol::Vesc { pole_pairs: args.pole_pairs },
        ProtocolArg::Modbus => Protocol::modbus(args.unit),
    };
    protocol.validate().map_err(|e| anyhow::anyhow!(e))?;
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 10_000.0) {
        bail!("--rate must be between 0 and 10000 lines per second, got {}", args.rate);
    }
    let config = SimConfig { seed: args.seed, ..SimConfig::default() };
    let mut emulator = Emulator::new(&protocol, args.rate, &config).map_err(|e| anyhow::anyhow!(e))?;
    if args.counter {
        if protocol != Protocol::Plotter {
            bail!("--counter is for --protocol plotter");
        }
        let device = drivebench::sim::device::plotter::PlotterDevice::new(args.rate).with_counter();
        emulator = emulator.with_device(Box::new(device));
    }
    if let Some(link) = &args.link {
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(emulator.path(), link)
            .with_context(|| format!("cannot create the link {}", link.display()))?;
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", emulator.path())?;
    stdout.flush()?;
    eprintln!(
        "drivebench: emulating a {} drive on {}; connect with --drive {}:{}; stop with Ctrl+C",
        protocol.label(),
        emulator.path(),
        protocol.name(),
        emulator.path()
    );
    // SIGUSR1 makes the emulated drive latch a fault, for trying fault display and reset:
    // `kill -USR1 <pid>`.
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, emulator.fault_request())
        .context("cannot install the SIGUSR1 handler")?;
    // SIGTERM and SIGINT end the run cleanly, with a word on bytes the host did not take.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot install a signal handler")?;
    }
    let ran = emulator.run(&stop).map_err(|e| anyhow::anyhow!(e));
    if let Some(link) = &args.link {
        let _ = std::fs::remove_file(link);
    }
    ran?;
    eprintln!(
        "drivebench: emulator stopped; {} bytes were dropped because the host did not read them in time",
        emulator.dropped_bytes()
    );
    Ok(())
}

fn load_bench(args: BenchArgs) -> Result<()> {
    use drivebench::loadtest::{Emulators, LoadOptions, LoadRun, project_for};
    if args.drives == 0 || args.drives > 64 {
        bail!("--drives must be between 1 and 64");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        bail!("--seconds must be positive");
    }
    let mut minimized = Vec::new();
    for w in &args.minimize {
        let parsed = w
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?)));
        match parsed {
            Some((a, b)) if a < b => minimized.push((a, b)),
            _ => bail!("--minimize {w}: expected A-B in seconds, A < B"),
        }
    }
    let opts = LoadOptions {
        drives: args.drives,
        rate_hz: args.rate,
        seconds: args.seconds,
        csv: args.csv.unwrap_or_else(|| std::env::temp_dir().join("drivebench-load.csv")),
        minimized,
        record: !args.no_record,
        disconnect_every_s: args.disconnect_every,
        history: args.history,
    };
    if let Some(s) = opts.disconnect_every_s
        && !(s.is_finite() && s >= 5.0)
    {
        bail!("--disconnect-every must be at least 5 seconds");
    }
    let exe = std::env::current_exe().context("cannot find the drivebench executable")?;
    let links = tempfile_dir()?;
    let emulators = Emulators::spawn(&exe, opts.drives, opts.rate_hz, &links)?;
    let project = project_for(&emulators.paths, &opts);
    let emulators = Arc::new(Mutex::new(emulators));
    // The soak's pulled cables: one emulator killed, started again 2 s later, in turn.
    let soaking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let soak = opts.disconnect_every_s.map(|every| {
        let (emulators, soaking) = (emulators.clone(), soaking.clone());
        let drives = opts.drives;
        std::thread::spawn(move || {
            let mut next = 0;
            let sleep = |s: f64, soaking: &std::sync::atomic::AtomicBool| {
                let until = std::time::Instant::now() + std::time::Duration::from_secs_f64(s);
                while soaking.load(std::sync::atomic::Ordering::Relaxed) && std::time::Instant::now() < until
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                soaking.load(std::sync::atomic::Ordering::Relaxed)
            };
            while sleep(every - 2.0, &soaking) {
                if let Ok(mut e) = emulators.lock() {
                    e.kill(next);
                }
                if !sleep(2.0, &soaking) {
                    break;
                }
                if let Ok(mut e) = emulators.lock()
                    && let Err(err) = e.restart(next)
                {
                    eprintln!("drivebench: cannot restart emulator {}: {err}", next + 1);
                }
                next = (next + 1) % drives;
            }
        })
    });
    let result: drivebench::ui::LoadResult = Arc::new(Mutex::new(None));
    let run = LoadRun::new(opts);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("drivebench — load test")
            .with_inner_size([1280.0, 800.0]),
        renderer: eframe::Renderer::Glow,
        persist_window: false,
        ..Default::default()
    };
    let shared = result.clone();
    eframe::run_native(
        "drivebench",
        options,
        Box::new(move |cc| Ok(Box::new(DrivebenchApp::new(cc, project, None, None).with_load(run, shared)))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
    soaking.store(false, std::sync::atomic::Ordering::Relaxed);
    if let Some(soak) = soak {
        let _ = soak.join();
    }
    let emulators = match Arc::try_unwrap(emulators) {
        Ok(m) => m.into_inner().map_err(|_| anyhow::anyhow!("emulator state poisoned"))?,
        Err(_) => bail!("the emulators are still in use"),
    };
    let restarts = emulators.restarts;
    let emulator_drops = emulators.finish();
    let _ = std::fs::remove_dir_all(&links);
    let outcome = result.lock().map_err(|_| anyhow::anyhow!("load test state poisoned"))?.take();
    let mut report = match outcome {
        Some(Ok(report)) => report,
        Some(Err(e)) => bail!("load test failed: {e}"),
        None => bail!("the window closed before the load test finished"),
    };
    report.restarts = restarts;
    println!("{report}");
    let drops: Vec<String> =
        emulator_drops.iter().map(|d| d.map_or_else(|| "?".to_owned(), |b| b.to_string())).collect();
    println!(
        "bytes the emulators could not deliver (drivebench not reading in time, or not connected yet): {}",
        drops.join(", ")
    );
    if report.lost() > 0 {
        bail!("{} samples lost", report.lost());
    }
    if !report.silent().is_empty() {
        bail!("no data from {}", report.silent().join(", "));
    }
    Ok(())
}

/// A fresh private directory for the emulators' links.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("drivebench-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
