//! placeholder
use crate::sim::device::Device;
use crate::sim::{SimDrive, TelemetryFrame};

pub struct ODriveDevice;

impl ODriveDevice {
    pub fn new() -> Self {
        ODriveDevice
    }
}

impl Device for ODriveDevice {
    fn receive(&mut self, _bytes: &[u8], _now_s: f64, _drive: &mut SimDrive, _out: &mut Vec<u8>) {}
    fn tick(&mut self, _now_s: f64, _drive: &mut SimDrive, _latest: &TelemetryFrame, _out: &mut Vec<u8>) {}
}
