//! placeholder
use crate::sim::device::Device;
use crate::sim::{SimDrive, TelemetryFrame};

pub struct SimpleFocDevice;

impl SimpleFocDevice {
    pub fn new(motor: char, rate_hz: f64) -> Self {
        let _ = (motor, rate_hz);
        SimpleFocDevice
    }
}

impl Device for SimpleFocDevice {
    fn receive(&mut self, _bytes: &[u8], _now_s: f64, _drive: &mut SimDrive, _out: &mut Vec<u8>) {}
    fn tick(&mut self, _now_s: f64, _drive: &mut SimDrive, _latest: &TelemetryFrame, _out: &mut Vec<u8>) {}
}
