//! A serial drive's traffic log, the packet monitor of the console panel: both directions,
//! timestamped, bounded, pausable, shown as text or hex.

use std::collections::VecDeque;
use std::fmt::Write as _;

use crate::drive::{Direction, Traffic};

/// Entries kept; older ones are dropped.
pub const MAX_ENTRIES: usize = 2000;
/// A received run of bytes without a line end is cut into entries of this size (binary
/// protocols, junk).
const MAX_ENTRY_BYTES: usize = 128;

/// One line (or chunk) on the link.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleEntry {
    pub t_s: f64,
    pub dir: Direction,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct Console {
    entries: VecDeque<ConsoleEntry>,
    /// Received bytes of a line not ended yet.
    partial: Option<ConsoleEntry>,
    paused: bool,
    /// Chunks that arrived while paused (not captured).
    missed: u64,
    /// Entries dropped from the front to keep the log bounded.
    evicted: u64,
}

impl Console {
    pub fn new() -> Self {
        Console::default()
    }

    pub fn push(&mut self, t: Traffic) {
        if self.paused {
            self.missed += 1;
            return;
        }
        match t.dir {
            Direction::Tx => {
                self.close_partial();
                self.add(ConsoleEntry { t_s: t.t_s, dir: Direction::Tx, bytes: t.bytes });
            }
            Direction::Rx => {
                for &b in &t.bytes {
                    let entry = self.partial.get_or_insert_with(|| ConsoleEntry {
                        t_s: t.t_s,
                        dir: Direction::Rx,
                        bytes: Vec::new(),
                    });
                    entry.bytes.push(b);
                    if b == b'\n' || entry.bytes.len() >= MAX_ENTRY_BYTES {
                        self.close_partial();
                    }
                }
            }
        }
    }

    fn close_partial(&mut self) {
        if let Some(p) = self.partial.take() {
            self.add(p);
        }
    }

    fn add(&mut self, entry: ConsoleEntry) {
        if self.entries.len() == MAX_ENTRIES {
            self.entries.pop_front();
            self.evicted += 1;
        }
        self.entries.push_back(entry);
    }

    /// Entries oldest first, the unfinished received line last.
    pub fn entries(&self) -> impl Iterator<Item = &ConsoleEntry> {
        self.entries.iter().chain(self.partial.iter())
    }

    pub fn len(&self) -> usize {
        self.entries.len() + usize::from(self.partial.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// While paused nothing new is captured, so the view holds still.
    pub fn set_paused(&mut self, paused: bool) {
        if paused && !self.paused {
            self.close_partial();
        }
        self.paused = paused;
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Chunks not captured because the console was paused.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.partial = None;
        self.missed = 0;
        self.evicted = 0;
    }
}

/// Bytes as text: printable ASCII as is, `\r` `\n` `\t` escaped, anything else as `\xNN`.
pub fn as_text(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02X}");
            }
        }
    }
    s
}

/// Bytes as hex pairs separated by spaces.
pub fn as_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02X}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rx(t_s: f64, bytes: &[u8]) -> Traffic {
        Traffic { t_s, dir: Direction::Rx, bytes: bytes.to_vec() }
    }

    #[test]
    fn received_chunks_become_lines_with_the_first_byte_time() {
        let mut c = Console::new();
        c.push(rx(1.0, b"12.5\t3"));
        c.push(rx(1.1, b"\r\n7\r\n8"));
        c.push(Traffic { t_s: 1.2, dir: Direction::Tx, bytes: b"MVP\n".to_vec() });
        let e: Vec<_> = c.entries().map(|e| (e.t_s, e.dir, as_text(&e.bytes))).collect();
        assert_eq!(
            e,
            vec![
                (1.0, Direction::Rx, "12.5\\t3\\r\\n".to_owned()),
                (1.1, Direction::Rx, "7\\r\\n".to_owned()),
                (1.1, Direction::Rx, "8".to_owned()),
                (1.2, Direction::Tx, "MVP\\n".to_owned()),
            ]
        );
    }

    #[test]
    fn bounded_pausable_and_binary_safe() {
        let mut c = Console::new();
        for i in 0..(MAX_ENTRIES + 10) {
            c.push(rx(i as f64, b"x\n"));
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        assert_eq!(c.evicted(), 10);
        c.clear();
        c.push(rx(0.0, &[0xAA; 300]));
        assert_eq!(c.len(), 3, "long runs without line end are cut");
        c.set_paused(true);
        c.push(rx(1.0, b"late\n"));
        assert_eq!(c.len(), 3);
        assert_eq!(c.missed(), 1);
        assert_eq!(as_hex(&[0x02, 0xAB, 0x0D]), "02 AB 0D");
        assert_eq!(as_text(&[b'a', 0, 0xff, b'\\']), "a\\x00\\xFF\\\\");
    }
}
