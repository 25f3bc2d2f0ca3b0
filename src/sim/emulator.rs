//! Runs a simulated drive behind a pseudo-terminal, speaking one protocol's device side, so
//! the serial path can be tried and tested without hardware: the app opens the printed
//! `/dev/pts/N` exactly as it would open `/dev/ttyUSB0`.

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};

use crate::protocol::Protocol;
use crate::sim::device::{self, Device};
use crate::sim::{SimConfig, SimDrive, TelemetryFrame};

/// The emulator's loop period: how often it reads, advances the simulation and streams.
const TICK: Duration = Duration::from_millis(1);
/// Longest stretch of simulated time computed at once after the process was held up.
const MAX_CATCH_UP_S: f64 = 0.2;

/// A simulated drive on a pseudo-terminal.
pub struct Emulator {
    master: TTYPort,
    /// Kept open: if the device side of the pair closes, every read on the master fails.
    _slave: TTYPort,
    path: String,
    device: Box<dyn Device>,
    drive: SimDrive,
    /// Bytes the host did not take in time (its side was not open or not reading).
    dropped_bytes: u64,
    /// Set from outside (a signal, a test) to make the device latch a fault.
    fault_request: Arc<AtomicBool>,
}

impl Emulator {
    /// Creates the pseudo-terminal pair and the drive.
    pub fn new(protocol: &Protocol, rate_hz: f64, config: &SimConfig) -> Result<Emulator, String> {
        let (mut master, slave) =
            TTYPort::pair().map_err(|e| format!("cannot create a pseudo-terminal: {e}"))?;
        let path = slave.name().ok_or("the pseudo-terminal has no device path")?;
        master.set_timeout(TICK).map_err(|e| e.to_string())?;
        let mut device = device::for_protocol(protocol, rate_hz);
        device.set_identity_seed(config.seed);
        Ok(Emulator {
            master,
            _slave: slave,
            path,
            device,
            drive: SimDrive::new(config),
            dropped_bytes: 0,
            fault_request: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Serves `device` instead of the protocol's default device side.
    pub fn with_device(mut self, device: Box<dyn Device>) -> Self {
        self.device = device;
        self
    }

    /// A flag that, once set, makes the emulated drive latch a fault as its protocol shows it
    /// (`drivebench emulate` sets it on SIGUSR1).
    pub fn fault_request(&self) -> Arc<AtomicBool> {
        self.fault_request.clone()
    }

    /// The device path a host connects to.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Serves until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), String> {
        let start = Instant::now();
        let mut buf = vec![0u8; 4096];
        let mut out = Vec::new();
        let mut frames: Vec<TelemetryFrame> = Vec::new();
        let mut latest = TelemetryFrame::default();
        while !stop.load(Ordering::Relaxed) {
            match self.master.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let now_s = start.elapsed().as_secs_f64();
                    self.advance(now_s, &mut frames, &mut latest);
                    self.device.receive(&buf[..n], now_s, &mut self.drive, &mut out);
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(format!("pseudo-terminal failed: {e}")),
            }
            let now_s = start.elapsed().as_secs_f64();
            self.advance(now_s, &mut frames, &mut latest);
            if self.fault_request.swap(false, Ordering::Relaxed) {
                self.device.force_fault(&mut self.drive);
            }
            self.device.tick(now_s, &mut self.drive, &latest, &mut out);
            self.send(&mut out);
        }
        self.drive.disable();
        Ok(())
    }

    fn advance(&mut self, now_s: f64, frames: &mut Vec<TelemetryFrame>, latest: &mut TelemetryFrame) {
        let behind = (now_s - self.drive.time_s()).min(MAX_CATCH_UP_S);
        if behind <= 0.0 {
            return;
        }
        frames.clear();
        self.drive.advance(behind, frames);
        if let Some(f) = frames.last() {
            *latest = *f;
        }
    }

    /// Writes what the device produced; what the host does not take within a tick is lost,
    /// as on a real UART nobody listens to.
    fn send(&mut self, out: &mut Vec<u8>) {
        let mut sent = 0;
        while sent < out.len() {
            match self.master.write(&out[sent..]) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.dropped_bytes += (out.len() - sent) as u64;
        out.clear();
    }

    /// Bytes thrown away because the host was not reading.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes
    }
}
