//! The device side of the serial protocols: a simulated drive answering like real firmware.
//! Each emulator is written from the protocol reference on its own, not by inverting the
//! host codec, so the end-to-end tests check the codecs against the wire format itself.

pub mod modbus;
pub mod odrive;
pub mod plotter;
pub mod simplefoc;
pub mod vesc;

use crate::protocol::Protocol;
use crate::sim::{SimDrive, TelemetryFrame};

/// One protocol's device side, driven by the emulator loop.
pub trait Device: Send {
    /// Bytes from the host, received at emulator time `now_s` (seconds since start).
    /// Replies go to `out`.
    fn receive(&mut self, bytes: &[u8], now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>);
    /// Called about every millisecond after the simulation advanced to `now_s`; `latest` is
    /// the newest telemetry frame. Streams, watchdogs and timeouts live here.
    fn tick(&mut self, now_s: f64, drive: &mut SimDrive, latest: &TelemetryFrame, out: &mut Vec<u8>);
    /// Latches a drive fault as the protocol shows it (status bits, error code, fault field),
    /// for testing fault reporting and reset. The power stage goes off.
    fn force_fault(&mut self, drive: &mut SimDrive) {
        drive.disable();
    }
    /// Gives this unit its own identity (serial number, UUID) from `seed`, as two boards of
    /// one kind differ; seed 1 keeps the default. Protocols without an identity ignore it.
    fn set_identity_seed(&mut self, _seed: u64) {}
}

/// The emulated device for a protocol; `rate_hz` is the telemetry stream rate for the
/// protocols that stream (Serial Plotter, SimpleFOC monitoring).
pub fn for_protocol(protocol: &Protocol, rate_hz: f64) -> Box<dyn Device> {
    match protocol {
        Protocol::Plotter => Box::new(plotter::PlotterDevice::new(rate_hz)),
        Protocol::SimpleFoc { motor } => Box::new(simplefoc::SimpleFocDevice::new(*motor, rate_hz)),
        Protocol::ODrive { .. } => Box::new(odrive::ODriveDevice::new()),
        Protocol::Vesc { pole_pairs } => Box::new(vesc::VescDevice::new(*pole_pairs)),
        Protocol::Modbus { unit, .. } => Box::new(modbus::ModbusDevice::new(*unit)),
    }
}
