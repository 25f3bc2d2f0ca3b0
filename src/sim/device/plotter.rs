//! A sketch that spins the simulated motor at a fixed speed and prints its telemetry in the
//! Serial Plotter format (`label:value` joined by `,`, lines ended by `\r\n`).
//!
//! Like many bench sketches it also reads simple text commands, one per line:
//! `speed <rpm>`, `current <A>`, `stop` (power stage off) and `start`.

use crate::drive::ControlMode;
use crate::sim::device::Device;
use crate::sim::{SimDrive, TelemetryFrame};

/// The speed the sketch holds after power-up.
pub const START_SPEED_RPM: f64 = 600.0;
const MAX_LINE: usize = 64;

pub struct PlotterDevice {
    period_s: f64,
    next_line_s: f64,
    started: bool,
    line: Vec<u8>,
    /// With a counter, each line ends in `seq:N` (N = lines printed before it), so a host can
    /// prove it lost no line.
    seq: Option<u64>,
}

impl PlotterDevice {
    /// `rate_hz`: telemetry lines per second (clamped to 1 Hz … 10 kHz).
    pub fn new(rate_hz: f64) -> Self {
        let rate = if rate_hz.is_finite() { rate_hz.clamp(1.0, 10_000.0) } else { 100.0 };
        PlotterDevice { period_s: 1.0 / rate, next_line_s: 0.0, started: false, line: Vec::new(), seq: None }
    }

    /// Adds a `seq` label counting the lines printed.
    pub fn with_counter(mut self) -> Self {
        self.seq = Some(0);
        self
    }

    fn command(&mut self, line: &str, drive: &mut SimDrive, out: &mut Vec<u8>) {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or("");
        let value = words.next().and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite());
        match (verb, value) {
            ("speed", Some(v)) => {
                drive.set_mode(ControlMode::Speed);
                drive.set_setpoint(v);
                let _ = drive.enable();
            }
            ("current", Some(v)) => {
                drive.set_mode(ControlMode::Current);
                drive.set_setpoint(v);
                let _ = drive.enable();
            }
            ("stop", None) => drive.disable(),
            ("start", None) => {
                drive.reset_faults();
                let _ = drive.enable();
            }
            _ => out.extend_from_slice(b"? commands: speed <rpm>, current <A>, stop, start\r\n"),
        }
    }
}

impl Device for PlotterDevice {
    fn receive(&mut self, bytes: &[u8], _now_s: f64, drive: &mut SimDrive, out: &mut Vec<u8>) {
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                if !self.line.is_empty() {
                    let text = String::from_utf8_lossy(&self.line).trim().to_owned();
                    self.line.clear();
                    self.command(&text, drive, out);
                }
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
    }

    fn tick(&mut self, now_s: f64, drive: &mut SimDrive, latest: &TelemetryFrame, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            drive.set_mode(ControlMode::Speed);
            drive.set_setpoint(START_SPEED_RPM);
            let _ = drive.enable();
            self.next_line_s = now_s;
        }
        if self.next_line_s < now_s - 0.1 {
            // Held up: do not print a burst of stale lines.
            self.next_line_s = now_s;
        }
        // Every line that fell due since the last tick (ticks are about 1 ms apart, lines can
        // be closer).
        while now_s >= self.next_line_s {
            self.next_line_s += self.period_s;
            let f = latest;
            let line = format!(
                "speed_rpm:{:.2},current_a:{:.3},position_rev:{:.4},voltage_v:{:.2},temperature_c:{:.2}",
                f.speed_rpm, f.current_a, f.position_rev, f.voltage_v, f.temperature_c
            );
            out.extend_from_slice(line.as_bytes());
            if let Some(seq) = &mut self.seq {
                out.extend_from_slice(format!(",seq:{seq}").as_bytes());
                *seq += 1;
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimConfig;

    #[test]
    fn streams_labelled_lines_at_the_rate_and_follows_commands() {
        let mut drive = SimDrive::new(&SimConfig::default());
        let mut dev = PlotterDevice::new(100.0);
        let mut frames = Vec::new();
        let mut out = Vec::new();
        let mut latest = TelemetryFrame::default();
        for ms in 0..1000 {
            frames.clear();
            drive.advance(0.001, &mut frames);
            if let Some(f) = frames.last() {
                latest = *f;
            }
            dev.tick(ms as f64 / 1000.0, &mut drive, &latest, &mut out);
        }
        let text = String::from_utf8(out.clone()).unwrap();
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert!((99..=101).contains(&lines.len()), "{} lines", lines.len());
        assert!(lines[0].starts_with("speed_rpm:"));
        let last_speed: f64 = lines.last().unwrap().split(',').next().unwrap()[10..].parse().unwrap();
        assert!((last_speed - START_SPEED_RPM).abs() < 30.0, "{last_speed}");
        out.clear();
        dev.receive(b"stop\r\nbogus\n", 1.0, &mut drive, &mut out);
        assert!(!drive.is_enabled());
        assert!(String::from_utf8_lossy(&out).starts_with("? commands"));
        dev.receive(b"speed -3", 1.0, &mut drive, &mut out);
        assert!(!lines[0].contains("seq"));
        dev.receive(b"00\n", 1.0, &mut drive, &mut out);
        assert!(drive.is_enabled());
        assert_eq!(drive.setpoint(), -300.0);
    }

    #[test]
    fn the_counter_numbers_every_line_and_lines_come_at_the_rate_even_with_slow_ticks() {
        let mut drive = SimDrive::new(&SimConfig::default());
        let mut dev = PlotterDevice::new(1000.0).with_counter();
        let mut out = Vec::new();
        let latest = TelemetryFrame::default();
        // Ticks every 1.3 ms for one second: still 1000 lines (±1), numbered without a gap.
        for k in 0..770 {
            dev.tick(k as f64 * 0.0013, &mut drive, &latest, &mut out);
        }
        let text = String::from_utf8(out).unwrap();
        let seqs: Vec<u64> = text
            .split_terminator("\r\n")
            .map(|l| l.rsplit_once("seq:").unwrap().1.parse().unwrap())
            .collect();
        assert!((999..=1002).contains(&seqs.len()), "{} lines", seqs.len());
        assert!(seqs.iter().enumerate().all(|(i, &s)| s == i as u64));
    }
}
