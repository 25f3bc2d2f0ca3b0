//! Arduino Serial Plotter lines: one sample per line, `label:value` fields or bare numbers,
//! separated by runs of comma, space or tab. Telemetry only: every label becomes a signal
//! named as sent (bare numbers become `value 1`, `value 2`, … by position) once a second line
//! carries it, with the first line's sample; a label seen once only (line noise, a wrong baud
//! rate) is no signal. The console can still send any text line to the sketch.

use crate::drive::{Command, Event, ParamSpec, Sample, SignalSpec};
use crate::protocol::{Codec, CodecError, CodecOut, LineSplitter, RawIntent};

/// The longest line kept; longer input is dropped up to its line end.
const MAX_LINE: usize = 4096;
/// More signals than this from one port is taken as garbage, not telemetry.
pub const MAX_SIGNALS: usize = 64;
/// Labels seen once kept at most (room for a line of many more labels than signals, so that
/// its first labels still become signals and the rest are reported).
const MAX_CANDIDATES: usize = 4 * MAX_SIGNALS;

/// The Serial Plotter host side.
pub struct PlotterCodec {
    lines: LineSplitter,
    signals: Vec<SignalSpec>,
    /// The first line after opening the port may be cut: it is dropped, as the IDE does.
    first_line_pending: bool,
    /// Labels refused because the signal list was full (reported once).
    overflow_reported: bool,
    unparsed_logged: u64,
    /// Labels seen in one line so far, with that line's number and sample: a label becomes a
    /// signal from the second line that carries it (its first sample then comes too), so that
    /// garbage, which rarely repeats a label, cannot fill the list before the sketch's lines.
    candidates: Vec<Candidate>,
    lines_seen: u64,
}

/// A label seen in one line only, with the sample it carried.
struct Candidate {
    name: String,
    line: u64,
    first: Sample,
}

impl Default for PlotterCodec {
    fn default() -> Self {
        PlotterCodec::new()
    }
}

impl PlotterCodec {
    pub fn new() -> Self {
        PlotterCodec {
            lines: LineSplitter::new(b"\n", MAX_LINE),
            signals: Vec::new(),
            first_line_pending: true,
            overflow_reported: false,
            unparsed_logged: 0,
            candidates: Vec::new(),
            lines_seen: 0,
        }
    }

    /// Appends the sample of label `name`: to its signal, to a new signal if the label is seen
    /// for the second time (with the first sample before it), or keeps it as a candidate.
    fn push_sample(&mut self, name: &str, t_s: f64, value: f64, out: &mut CodecOut) {
        if let Some(i) = self.signals.iter().position(|s| s.name == name) {
            out.samples.push(Sample { t_s, signal: i as u16, value });
            return;
        }
        let first = match self.candidates.iter().position(|c| c.name == name) {
            Some(at) if self.candidates[at].line < self.lines_seen => self.candidates.swap_remove(at).first,
            // The same label twice in one line: the first one counts.
            Some(_) => return,
            None => {
                if self.candidates.len() >= MAX_CANDIDATES {
                    // Labels of earlier lines that never came again go first.
                    let line = self.lines_seen;
                    self.candidates.retain(|c| c.line == line);
                    if self.candidates.len() >= MAX_CANDIDATES {
                        return;
                    }
                }
                let first = Sample { t_s, signal: 0, value };
                self.candidates.push(Candidate { name: name.to_owned(), line: self.lines_seen, first });
                return;
            }
        };
        if self.signals.len() >= MAX_SIGNALS {
            if !self.overflow_reported {
                self.overflow_reported = true;
                out.events.push(Event::Log(format!(
                    "more than {MAX_SIGNALS} different labels: `{name}` and later new labels are ignored"
                )));
            }
            return;
        }
        self.signals.push(SignalSpec::new(name, unit_for(name)));
        out.events.push(Event::Signals(self.signals.clone()));
        let signal = (self.signals.len() - 1) as u16;
        out.samples.push(Sample { signal, ..first });
        out.samples.push(Sample { t_s, signal, value });
    }

    fn line(&mut self, raw: &[u8], now_s: f64, out: &mut CodecOut) {
        self.lines_seen += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw);
        let fields = parse_line(&text);
        if fields.is_empty() {
            if !text.trim().is_empty() && self.unparsed_logged < 20 {
                self.unparsed_logged += 1;
                out.events.push(Event::Log(format!("not a plotter line: {}", abbreviate(&text))));
            }
            return;
        }
        for (name, value) in fields {
            let Some(value) = value else { continue };
            self.push_sample(&name, now_s, value, out);
        }
    }
}

/// Unit guessed from a canonical name's suffix (`speed_rpm` → rpm); empty otherwise.
fn unit_for(name: &str) -> &'static str {
    let suffixes: [(&str, &str); 9] = [
        ("_rpm", "rpm"),
        ("_a", "A"),
        ("_ma", "mA"),
        ("_v", "V"),
        ("_c", "°C"),
        ("_rev", "rev"),
        ("_rad", "rad"),
        ("_rad_s", "rad/s"),
        ("_nm", "N·m"),
    ];
    let lower = name.to_ascii_lowercase();
    suffixes.iter().filter(|(s, _)| lower.ends_with(s)).max_by_key(|(s, _)| s.len()).map_or("", |(_, u)| u)
}

fn abbreviate(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if text.chars().count() > 60 {
        s.push('…');
    }
    s
}

/// JavaScript `parseFloat`: the longest numeric prefix after leading white space (so `12abc`
/// is 12); `None` where JavaScript gives NaN. Infinite values are refused as well.
pub fn parse_float_prefix(text: &str) -> Option<f64> {
    let t = text.trim_start();
    let b = t.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut mantissa_digits = i - digits_start;
    if i < b.len() && b[i] == b'.' {
        let frac_start = i + 1;
        let mut j = frac_start;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        mantissa_digits += j - frac_start;
        if mantissa_digits > 0 {
            i = j;
        }
    }
    if mantissa_digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    t[..i].parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Splits one line into `(name, value)` pairs by the Serial Plotter rules. A value that is
/// not a number is `None` (the label still names a signal the sender uses).
pub fn parse_line(line: &str) -> Vec<(String, Option<f64>)> {
    let fields: Vec<&str> = line.split([',', ' ', '\t']).filter(|f| !f.is_empty()).collect();
    let labelled = line.find(':').is_some_and(|pos| pos > 0);
    if labelled {
        fields
            .iter()
            .filter_map(|f| {
                let (label, value) = f.split_once(':')?;
                if label.is_empty() || value.is_empty() {
                    return None;
                }
                Some((label.to_owned(), parse_float_prefix(value)))
            })
            .collect()
    } else {
        fields.iter().enumerate().map(|(i, f)| (format!("value {}", i + 1), parse_float_prefix(f))).collect()
    }
}

impl Codec for PlotterCodec {
    fn signals(&self) -> Vec<SignalSpec> {
        self.signals.clone()
    }

    fn params(&self) -> Vec<ParamSpec> {
        Vec::new()
    }

    fn can_control(&self) -> bool {
        false
    }

    fn start(&mut self, _now_s: f64, _out: &mut CodecOut) {
        self.lines.reset();
        self.first_line_pending = true;
    }

    fn command(&mut self, cmd: &Command, _now_s: f64, _out: &mut CodecOut) -> Result<(), CodecError> {
        match cmd {
            // Nothing to read or stop: the sketch only prints.
            Command::ReadAllParams
            | Command::Disable
            | Command::EStop
            | Command::Connect
            | Command::Disconnect => Ok(()),
            Command::ReadParam(key) | Command::WriteParam(key, _) => {
                Err(CodecError::UnknownParam(key.clone()))
            }
            other => Err(CodecError::Unsupported(format!(
                "{} (Serial Plotter is telemetry only; use the console to send text)",
                command_name(other)
            ))),
        }
    }

    fn estop(&mut self, _now_s: f64, _out: &mut CodecOut) {}

    /// A sketch's text commands mean what the sketch makes of them; a number in one may be a
    /// setpoint in any unit, which no project limit can be checked against.
    fn raw_intent(&self, text: &str) -> RawIntent {
        if text.chars().any(|c| c.is_ascii_digit()) {
            RawIntent::Guarded(
                "a Serial Plotter drive is telemetry only: drivebench cannot check the numbers in this line \
                 against the project limits, so lines with numbers are not sent"
                    .into(),
            )
        } else {
            RawIntent::Other
        }
    }

    fn raw(&mut self, text: &str, _now_s: f64, out: &mut CodecOut) {
        out.tx.extend_from_slice(text.as_bytes());
        out.tx.push(b'\n');
    }

    fn feed(&mut self, mut bytes: &[u8], now_s: f64, out: &mut CodecOut) {
        if self.first_line_pending {
            // Skip up to and including the first line end.
            match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.first_line_pending = false;
                    bytes = &bytes[end + 1..];
                }
                None => return,
            }
        }
        let mut lines = std::mem::replace(&mut self.lines, LineSplitter::new(b"\n", 0));
        lines.feed(bytes, |line| self.line(line, now_s, out));
        self.lines = lines;
    }

    fn poll(&mut self, _now_s: f64, _out: &mut CodecOut) {}

    fn stop(&mut self, _now_s: f64, _out: &mut CodecOut) {}
}

fn command_name(cmd: &Command) -> &'static str {
    match cmd {
        Command::Enable => "enable",
        Command::ResetFaults => "fault reset",
        Command::SetMode(_) => "mode change",
        Command::SetSetpoint(..) => "setpoint",
        _ => "this command",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(codec: &mut PlotterCodec, chunks: &[&[u8]]) -> CodecOut {
        let mut out = CodecOut::new();
        for (i, c) in chunks.iter().enumerate() {
            codec.feed(c, i as f64, &mut out);
        }
        out
    }

    fn values(codec: &PlotterCodec, out: &CodecOut) -> Vec<(String, f64)> {
        out.samples.iter().map(|s| (codec.signals[s.signal as usize].name.clone(), s.value)).collect()
    }

    #[test]
    fn reference_examples_parse() {
        let v = parse_line("Vq:1.20,vel:9.99,angle:12.30");
        assert_eq!(
            v,
            vec![("Vq".into(), Some(1.2)), ("vel".into(), Some(9.99)), ("angle".into(), Some(12.3))]
        );
        let v = parse_line("1.2\t9.99\t12.3");
        assert_eq!(
            v,
            vec![
                ("value 1".into(), Some(1.2)),
                ("value 2".into(), Some(9.99)),
                ("value 3".into(), Some(12.3))
            ]
        );
        let v = parse_line("a:1 b:2,c:3");
        assert_eq!(v, vec![("a".into(), Some(1.0)), ("b".into(), Some(2.0)), ("c".into(), Some(3.0))]);
        // Trailing separator tolerated; a field lacking a value dropped.
        assert_eq!(parse_line("a:1,b:,"), vec![("a".into(), Some(1.0))]);
        // A colon at position 0 does not make a labelled line.
        assert_eq!(parse_line(":5 6"), vec![("value 1".into(), None), ("value 2".into(), Some(6.0))]);
    }

    #[test]
    fn numbers_follow_parse_float() {
        assert_eq!(parse_float_prefix("12abc"), Some(12.0));
        assert_eq!(parse_float_prefix(" -1.5e3x"), Some(-1500.0));
        assert_eq!(parse_float_prefix(".5"), Some(0.5));
        assert_eq!(parse_float_prefix("5."), Some(5.0));
        assert_eq!(parse_float_prefix("1e"), Some(1.0));
        for nan in ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-", ".", "abc", ""] {
            assert_eq!(parse_float_prefix(nan), None, "{nan}");
        }
    }

    #[test]
    fn first_line_is_dropped_and_partial_last_line_buffered() {
        let mut c = PlotterCodec::new();
        let out = feed_all(
            &mut c,
            &[b"d:7\r\nspeed_rpm:10,current_a:0.5\r\n", b"speed_rpm:1", b"1\r\nspeed_rpm:12,current_a:0.6\n"],
        );
        assert_eq!(
            values(&c, &out),
            vec![
                ("speed_rpm".into(), 10.0),
                ("speed_rpm".into(), 11.0),
                ("speed_rpm".into(), 12.0),
                ("current_a".into(), 0.5),
                ("current_a".into(), 0.6)
            ]
        );
        assert_eq!(c.signals[0].unit, "rpm");
        assert_eq!(c.signals[1].unit, "A");
        assert!(!c.signals.iter().any(|s| s.name == "d"), "the cut first line is dropped");
        // Timestamps are those of the chunk that completed each line.
        assert_eq!(out.samples.iter().map(|s| s.t_s).collect::<Vec<_>>(), vec![0.0, 2.0, 2.0, 0.0, 2.0]);
        let announced: Vec<usize> = out
            .events
            .iter()
            .filter_map(|e| if let Event::Signals(s) = e { Some(s.len()) } else { None })
            .collect();
        assert_eq!(announced, vec![1, 2], "each new label announces the grown list");
    }

    #[test]
    fn every_split_point_gives_the_same_samples() {
        let body: &[u8] =
            b"Vq:1.20,vel:9.99,angle:12.30\r\n1.2\t9.99\t12.3\na:1 b:2,c:3\nx:nan,y:1e999,z:-0.5\r\n";
        let stream = &[b"junk\n", body, body].concat()[..];
        let mut whole = PlotterCodec::new();
        let mut out = CodecOut::new();
        whole.feed(stream, 0.0, &mut out);
        let expected = values(&whole, &out);
        assert_eq!(expected.len(), 2 * (3 + 3 + 3 + 1));
        for cut in 0..=stream.len() {
            let mut c = PlotterCodec::new();
            let mut o = CodecOut::new();
            c.feed(&stream[..cut], 0.0, &mut o);
            c.feed(&stream[cut..], 0.0, &mut o);
            assert_eq!(values(&c, &o), expected, "cut at {cut}");
        }
        let mut c = PlotterCodec::new();
        let mut o = CodecOut::new();
        for b in stream {
            c.feed(std::slice::from_ref(b), 0.0, &mut o);
        }
        assert_eq!(values(&c, &o), expected, "byte by byte");
    }

    #[test]
    fn a_label_seen_once_is_no_signal_and_garbage_does_not_lock_out_the_sketch() {
        let mut c = PlotterCodec::new();
        let mut out = CodecOut::new();
        c.feed(b"\n", 0.0, &mut out);
        // A wrong baud rate or a boot loader: 200 different labels, each once.
        for i in 0..200 {
            c.feed(format!("x{i}q:{i}\n").as_bytes(), 0.001 * f64::from(i), &mut out);
        }
        assert!(c.signals.is_empty() && out.samples.is_empty(), "{:?}", c.signals);
        for k in 0..3 {
            c.feed(format!("speed_rpm:{k},current_a:0.{k}\n").as_bytes(), 1.0 + f64::from(k), &mut out);
        }
        assert_eq!(c.signals.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["speed_rpm", "current_a"]);
        let speed: Vec<(f64, f64)> =
            out.samples.iter().filter(|s| s.signal == 0).map(|s| (s.t_s, s.value)).collect();
        assert_eq!(speed, [(1.0, 0.0), (2.0, 1.0), (3.0, 2.0)], "the first line's sample comes too");
    }

    #[test]
    fn a_line_of_more_labels_than_signals_gives_the_first_64_and_says_so() {
        for width in [64, 65, 100, 300] {
            let mut c = PlotterCodec::new();
            let mut out = CodecOut::new();
            let line: Vec<String> = (0..width).map(|i| format!("bin{i}:{i}")).collect();
            let line = format!("{}\n", line.join(","));
            c.feed(b"\n", 0.0, &mut out);
            for _ in 0..3 {
                c.feed(line.as_bytes(), 0.0, &mut out);
            }
            assert_eq!(c.signals.len(), MAX_SIGNALS, "{width} labels a line");
            assert_eq!(c.signals[63].name, "bin63");
            let said = out.events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("ignored")));
            assert_eq!(said, width > MAX_SIGNALS, "{width} labels a line");
        }
    }

    #[test]
    fn garbage_never_panics_and_labels_are_bounded() {
        let mut c = PlotterCodec::new();
        let mut out = CodecOut::new();
        let mut junk = Vec::new();
        for i in 0..5000u32 {
            // Each label twice: a label seen once is no signal.
            junk.extend_from_slice(format!("l{i}:{i}\nl{i}:{i}\n").as_bytes());
            junk.extend_from_slice(&[0, 0xff, 0xfe, b':', b'\n']);
        }
        junk.extend(std::iter::repeat_n(b'x', 100_000));
        c.feed(&junk, 0.0, &mut out);
        assert_eq!(c.signals.len(), MAX_SIGNALS);
        assert!(c.candidates.len() <= MAX_CANDIDATES);
        assert!(c.lines.pending().len() <= MAX_LINE);
        assert!(out.events.iter().any(|e| matches!(e, Event::Log(t) if t.contains("ignored"))));
    }

    #[test]
    fn commands_are_refused_but_raw_text_goes_out() {
        let mut c = PlotterCodec::new();
        let mut out = CodecOut::new();
        assert!(!c.can_control());
        assert!(c.command(&Command::Enable, 0.0, &mut out).is_err());
        assert!(c.command(&Command::ReadAllParams, 0.0, &mut out).is_ok());
        c.raw("stop", 0.0, &mut out);
        assert_eq!(out.tx, b"stop\n");
        assert_eq!(c.raw_intent("stop"), RawIntent::Other);
        assert!(matches!(c.raw_intent("speed 600"), RawIntent::Guarded(_)), "numbers cannot be checked");
    }
}
