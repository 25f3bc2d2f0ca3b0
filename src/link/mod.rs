//! Byte transports. A [`SerialLink`] opens a port (USB-serial adapter, on-board UART or a
//! pseudo-terminal) through `serialport`, and runs a reader thread that blocks in the kernel
//! until bytes arrive, stamps each chunk with the session time and hands it over a channel:
//! the drive's worker wakes on that channel, so nothing ever spins.

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, bounded};
use serde::{Deserialize, Serialize};
use serialport::{ClearBuffer, SerialPort};
use thiserror::Error;

use crate::worker::Clock;

/// Chunks read but not yet taken by the worker; the reader waits (and the OS buffers) beyond.
const INPUT_CAPACITY: usize = 1024;
/// How long a blocked read waits before it checks whether the link is closing.
const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// How long a write may wait for room in the output buffer before the link counts as stuck.
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FlowControl {
    #[default]
    None,
    /// XON/XOFF.
    Software,
    /// RTS/CTS.
    Hardware,
}

/// Everything needed to open a serial port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SerialSettings {
    /// Device path, e.g. `/dev/ttyUSB0`, `/dev/ttyACM0`, `/dev/pts/3`.
    pub port: String,
    /// Any rate the OS accepts; non-standard rates are passed on as given.
    pub baud: u32,
    /// 5 to 8.
    pub data_bits: u8,
    pub parity: Parity,
    /// 1 or 2.
    pub stop_bits: u8,
    pub flow_control: FlowControl,
}

impl Default for SerialSettings {
    fn default() -> Self {
        SerialSettings {
            port: String::new(),
            baud: 115_200,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow_control: FlowControl::None,
        }
    }
}

impl SerialSettings {
    pub fn new(port: &str, baud: u32) -> Self {
        SerialSettings { port: port.to_owned(), baud, ..SerialSettings::default() }
    }

    /// The framing in the usual short form, e.g. `8N1`, `8E1`.
    pub fn framing(&self) -> String {
        let parity = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        format!("{}{parity}{}", self.data_bits, self.stop_bits)
    }

    /// Sets data bits, parity and stop bits from the short form (`8N1`, `7E2`, …).
    pub fn set_framing(&mut self, text: &str) -> Result<(), String> {
        let bad = || {
            format!("framing `{text}` is not of the form 8N1 (data bits 5–8, parity N/E/O, stop bits 1–2)")
        };
        let b = text.trim().as_bytes();
        if b.len() != 3 {
            return Err(bad());
        }
        let data_bits = match b[0] {
            b'5'..=b'8' => b[0] - b'0',
            _ => return Err(bad()),
        };
        let parity = match b[1].to_ascii_uppercase() {
            b'N' => Parity::None,
            b'E' => Parity::Even,
            b'O' => Parity::Odd,
            _ => return Err(bad()),
        };
        let stop_bits = match b[2] {
            b'1' | b'2' => b[2] - b'0',
            _ => return Err(bad()),
        };
        self.data_bits = data_bits;
        self.parity = parity;
        self.stop_bits = stop_bits;
        Ok(())
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.port.trim().is_empty() {
            return Err("no serial port given".into());
        }
        if self.baud == 0 {
            return Err("baud rate must be above 0".into());
        }
        if !(5..=8).contains(&self.data_bits) {
            return Err(format!("data bits must be 5 to 8, not {}", self.data_bits));
        }
        if !(1..=2).contains(&self.stop_bits) {
            return Err(format!("stop bits must be 1 or 2, not {}", self.stop_bits));
        }
        Ok(())
    }

    /// A `serialport` builder with these settings.
    pub fn builder(&self) -> serialport::SerialPortBuilder {
        let data_bits = match self.data_bits {
            5 => serialport::DataBits::Five,
            6 => serialport::DataBits::Six,
            7 => serialport::DataBits::Seven,
            _ => serialport::DataBits::Eight,
        };
        let parity = match self.parity {
            Parity::None => serialport::Parity::None,
            Parity::Even => serialport::Parity::Even,
            Parity::Odd => serialport::Parity::Odd,
        };
        let stop_bits =
            if self.stop_bits == 2 { serialport::StopBits::Two } else { serialport::StopBits::One };
        let flow = match self.flow_control {
            FlowControl::None => serialport::FlowControl::None,
            FlowControl::Software => serialport::FlowControl::Software,
            FlowControl::Hardware => serialport::FlowControl::Hardware,
        };
        serialport::new(&self.port, self.baud)
            .data_bits(data_bits)
            .parity(parity)
            .stop_bits(stop_bits)
            .flow_control(flow)
            .timeout(READ_TIMEOUT)
    }
}

/// Why a link could not be opened or stopped working.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LinkError {
    #[error("serial port {port} does not exist (is the adapter plugged in?)")]
    NotFound { port: String },
    #[error("serial port {port} is busy: another program (or another drive in this bench) has it open")]
    Busy { port: String },
    #[error(
        "permission denied opening {port}: add your user to the `dialout` group \
         (sudo usermod -aG dialout $USER, then log in again)"
    )]
    PermissionDenied { port: String },
    #[error("{port} does not accept the settings: {reason}")]
    Settings { port: String, reason: String },
    #[error("{port}: {reason}")]
    Io { port: String, reason: String },
    #[error("link to {port} lost: {reason}")]
    Lost { port: String, reason: String },
}

/// What the reader thread hands to the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkInput {
    /// Bytes read, with the session time they arrived at.
    Bytes { t_s: f64, bytes: Vec<u8> },
    /// The port failed (unplugged adapter, closed pseudo-terminal); the reader has stopped.
    Lost(String),
}

/// An open serial port with its reader thread.
pub struct SerialLink {
    settings: SerialSettings,
    writer: Box<dyn SerialPort>,
    input: Receiver<LinkInput>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl SerialLink {
    /// Opens the port, discards whatever was waiting in it, and starts the reader.
    pub fn open(settings: &SerialSettings, clock: Clock) -> Result<SerialLink, LinkError> {
        settings.validate().map_err(|reason| LinkError::Settings { port: settings.port.clone(), reason })?;
        let port = settings.port.clone();
        let mut writer = settings.builder().open().map_err(|e| open_error(&port, e))?;
        // Stale bytes (a half line, replies to a previous session) would be misread.
        let _ = writer.clear(ClearBuffer::All);
        writer
            .set_timeout(WRITE_TIMEOUT)
            .map_err(|e| LinkError::Io { port: port.clone(), reason: e.to_string() })?;
        let mut reader_port =
            writer.try_clone().map_err(|e| LinkError::Io { port: port.clone(), reason: e.to_string() })?;
        reader_port
            .set_timeout(READ_TIMEOUT)
            .map_err(|e| LinkError::Io { port: port.clone(), reason: e.to_string() })?;
        let (tx, rx) = bounded(INPUT_CAPACITY);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_reader = stop.clone();
        let reader = std::thread::Builder::new()
            .name(format!("serial-{}", port.rsplit('/').next().unwrap_or(&port)))
            .spawn(move || {
                let mut buf = vec![0u8; 4096];
                while !stop_reader.load(Ordering::Relaxed) {
                    match reader_port.read(&mut buf) {
                        Ok(0) => {}
                        Ok(n) => {
                            let chunk = LinkInput::Bytes { t_s: clock.now_s(), bytes: buf[..n].to_vec() };
                            if tx.send(chunk).is_err() {
                                return;
                            }
                        }
                        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(e) => {
                            if !stop_reader.load(Ordering::Relaxed) {
                                let _ = tx.send(LinkInput::Lost(lost_reason(&e)));
                            }
                            return;
                        }
                    }
                }
            })
            .map_err(|e| LinkError::Io { port: port.clone(), reason: format!("cannot start reader: {e}") })?;
        Ok(SerialLink { settings: settings.clone(), writer, input: rx, stop, reader: Some(reader) })
    }

    pub fn settings(&self) -> &SerialSettings {
        &self.settings
    }

    /// The baud rate the port actually runs at, as the OS reports it.
    pub fn actual_baud(&self) -> Option<u32> {
        self.writer.baud_rate().ok()
    }

    /// Writes every byte or fails; a port that stays full for the write timeout is stuck.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.writer
            .write_all(bytes)
            .map_err(|e| LinkError::Lost { port: self.settings.port.clone(), reason: lost_reason(&e) })
    }

    /// The channel the reader fills.
    pub fn input(&self) -> &Receiver<LinkInput> {
        &self.input
    }

    /// Stops the reader and closes the port.
    pub fn close(mut self) {
        self.stop_reader();
    }

    fn stop_reader(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            // The reader wakes within READ_TIMEOUT; if it is blocked handing over a chunk,
            // draining makes room.
            while !reader.is_finished() {
                while self.input.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(2));
            }
            let _ = reader.join();
        }
    }
}

impl Drop for SerialLink {
    fn drop(&mut self) {
        self.stop_reader();
    }
}

fn lost_reason(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::BrokenPipe => "the device closed the port (unplugged?)".into(),
        ErrorKind::TimedOut => "writes time out: the device does not take data".into(),
        _ if e.raw_os_error() == Some(5) => "input/output error: the device went away (unplugged?)".into(),
        _ => e.to_string(),
    }
}

fn open_error(port: &str, e: serialport::Error) -> LinkError {
    let port = port.to_owned();
    let text = e.to_string();
    let lower = text.to_lowercase();
    match e.kind() {
        serialport::ErrorKind::Io(ErrorKind::NotFound) => return LinkError::NotFound { port },
        serialport::ErrorKind::Io(ErrorKind::PermissionDenied) => {
            return LinkError::PermissionDenied { port };
        }
        _ => {}
    }
    if lower.contains("no such file") || lower.contains("not found") {
        LinkError::NotFound { port }
    } else if lower.contains("permission denied") {
        LinkError::PermissionDenied { port }
    } else if lower.contains("lock") || lower.contains("busy") || lower.contains("would block") {
        LinkError::Busy { port }
    } else if matches!(e.kind(), serialport::ErrorKind::InvalidInput) {
        LinkError::Settings { port, reason: text }
    } else if !std::path::Path::new(&port).exists() {
        LinkError::NotFound { port }
    } else {
        LinkError::Io { port, reason: text }
    }
}

/// A port the OS lists.
#[derive(Debug, Clone, PartialEq)]
pub struct PortInfo {
    pub path: String,
    /// What kind of port, with USB vendor/product and names where known.
    pub description: String,
}

/// The serial ports the OS knows of (pseudo-terminals are never listed: type their path).
pub fn list_ports() -> Result<Vec<PortInfo>, String> {
    let ports = serialport::available_ports().map_err(|e| format!("cannot list serial ports: {e}"))?;
    let mut out: Vec<PortInfo> = ports
        .into_iter()
        .map(|p| {
            let description = match p.port_type {
                serialport::SerialPortType::UsbPort(usb) => {
                    let mut d = format!("USB {:04x}:{:04x}", usb.vid, usb.pid);
                    for part in [usb.manufacturer, usb.product, usb.serial_number.map(|s| format!("s/n {s}"))]
                        .into_iter()
                        .flatten()
                    {
                        d.push_str(", ");
                        d.push_str(&part);
                    }
                    d
                }
                serialport::SerialPortType::PciPort => "PCI / on-board".into(),
                serialport::SerialPortType::BluetoothPort => "Bluetooth".into(),
                serialport::SerialPortType::Unknown => "serial".into(),
            };
            PortInfo { path: p.port_name, description }
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serialport::TTYPort;
    use std::time::Instant;

    fn recv_bytes(link: &SerialLink, want: usize) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < want {
            match link.input().recv_deadline(deadline) {
                Ok(LinkInput::Bytes { bytes, .. }) => got.extend(bytes),
                Ok(LinkInput::Lost(e)) => panic!("lost: {e}"),
                Err(_) => panic!("timed out with {got:?}"),
            }
        }
        got
    }

    #[test]
    fn framing_round_trips_and_rejects_nonsense() {
        let mut s = SerialSettings::default();
        assert_eq!(s.framing(), "8N1");
        s.set_framing("7e2").unwrap();
        assert_eq!((s.data_bits, s.parity, s.stop_bits), (7, Parity::Even, 2));
        assert_eq!(s.framing(), "7E2");
        for bad in ["9N1", "8X1", "8N3", "8N", ""] {
            assert!(s.set_framing(bad).is_err(), "{bad}");
        }
        assert_eq!(s.framing(), "7E2", "a refused framing changes nothing");
    }

    #[test]
    fn pseudo_terminal_carries_bytes_both_ways_at_a_custom_baud() {
        let (mut master, slave) = TTYPort::pair().expect("pty pair");
        let path = slave.name().expect("slave name");
        let settings = SerialSettings::new(&path, 1_234_567);
        let mut link = SerialLink::open(&settings, Clock::new()).expect("open pty");
        assert_eq!(link.actual_baud(), Some(1_234_567), "custom rates are used as given");
        master.write_all(b"hello\n").unwrap();
        assert_eq!(recv_bytes(&link, 6), b"hello\n");
        link.write(b"ping\n").unwrap();
        let mut buf = [0u8; 5];
        master.set_timeout(Duration::from_secs(5)).unwrap();
        master.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping\n");
        drop(slave);
        link.close();
    }

    #[test]
    fn second_open_reports_busy_and_missing_port_is_named() {
        let (_master, slave) = TTYPort::pair().expect("pty pair");
        let path = slave.name().expect("slave name");
        let _first = SerialLink::open(&SerialSettings::new(&path, 115_200), Clock::new()).expect("first");
        let err = SerialLink::open(&SerialSettings::new(&path, 115_200), Clock::new()).err().expect("busy");
        assert!(matches!(err, LinkError::Busy { .. }), "{err:?}");
        assert!(err.to_string().contains("busy"));
        let err =
            SerialLink::open(&SerialSettings::new("/dev/ttyNOPE42", 115_200), Clock::new()).err().unwrap();
        assert!(matches!(err, LinkError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("/dev/ttyNOPE42"));
    }

    #[test]
    fn permission_error_names_the_dialout_group() {
        let err = open_error(
            "/dev/ttyUSB0",
            serialport::Error::new(
                serialport::ErrorKind::Io(ErrorKind::PermissionDenied),
                "Permission denied",
            ),
        );
        assert!(err.to_string().contains("dialout"), "{err}");
    }

    #[test]
    fn closing_the_device_side_reports_the_link_lost() {
        let (master, slave) = TTYPort::pair().expect("pty pair");
        let path = slave.name().expect("slave name");
        let link = SerialLink::open(&SerialSettings::new(&path, 115_200), Clock::new()).expect("open");
        drop(slave);
        drop(master);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match link.input().recv_deadline(deadline) {
                Ok(LinkInput::Lost(reason)) => {
                    assert!(!reason.is_empty());
                    break;
                }
                Ok(LinkInput::Bytes { .. }) => {}
                Err(_) => panic!("the reader never reported the lost link"),
            }
        }
    }
}
