//! Scope logic behind the plots, free of any UI: level crossings and the trigger that captures
//! a window around one, statistics of a signal over a time window, and the linear map that
//! draws a second value axis on a plot's single value scale.

use crate::project::{TriggerEdge, TriggerMode, TriggerSettings};
use crate::telemetry::Series;

// ---- level crossings ----

/// The time at which the straight line from sample `a` to sample `b` meets `level`, if the pair
/// crosses it in the direction `edge` asks for.
///
/// A value at or above the level counts as above: rising is below → at-or-above, falling is
/// at-or-above → below. So a sample exactly on the level completes a rising crossing (and its
/// time is the crossing time), and a signal that only touches the level from below gives a
/// rising and then a falling crossing. A NaN on either side is a gap: no crossing is seen across
/// it. Between two finite values the time is interpolated linearly; with an infinite value
/// (a saturated reading) the crossing is placed at the later sample.
pub fn crossing(a: (f64, f64), b: (f64, f64), level: f64, edge: TriggerEdge) -> Option<f64> {
    let ((ta, va), (tb, vb)) = (a, b);
    if va.is_nan() || vb.is_nan() || level.is_nan() {
        return None;
    }
    let rising = va < level && vb >= level;
    let falling = va >= level && vb < level;
    let hit = match edge {
        TriggerEdge::Rising => rising,
        TriggerEdge::Falling => falling,
        TriggerEdge::Either => rising || falling,
    };
    if !hit {
        return None;
    }
    if va.is_finite() && vb.is_finite() {
        // In (0, 1] rising and [0, 1) falling: the pair is on both sides of the level.
        let f = (level - va) / (vb - va);
        Some((ta + f * (tb - ta)).clamp(ta, tb))
    } else {
        Some(tb)
    }
}

/// Reads one series incrementally: every call sees only the samples stored since the previous
/// call (each sample is looked at once, whatever the history length), and remembers the last
/// sample so that a crossing between two calls is found.
#[derive(Debug, Clone)]
pub struct CrossingScanner {
    /// Samples after (`t_s`, the first `seen_at_t` samples stored at exactly `t_s`) are new.
    /// Counting the samples sharing the newest time keeps equal-time samples exact.
    t_s: f64,
    seen_at_t: usize,
    /// The last sample read.
    prev: Option<(f64, f64)>,
}

impl CrossingScanner {
    /// A scanner whose first call sees every stored sample.
    pub fn from_start() -> Self {
        CrossingScanner { t_s: f64::NEG_INFINITY, seen_at_t: 0, prev: None }
    }

    /// A scanner whose first call sees only samples stored after now.
    pub fn after_newest(series: &Series) -> Self {
        let Some((t_s, value)) = series.last() else { return Self::from_start() };
        let seen_at_t = series.samples_in(t_s, f64::INFINITY).count();
        CrossingScanner { t_s, seen_at_t, prev: Some((t_s, value)) }
    }

    /// Reads new samples with `t < stop_before_s`, in order. With `find` set, stops right after
    /// the first sample that completes a crossing and returns the crossing time; otherwise
    /// reads them all and returns `None`.
    pub fn scan(
        &mut self,
        series: &Series,
        stop_before_s: f64,
        find: Option<(f64, TriggerEdge)>,
    ) -> Option<f64> {
        let from = if self.t_s.is_finite() { self.t_s } else { f64::MIN };
        let mut skip = self.seen_at_t;
        for (t, v) in series.samples_in(from, f64::INFINITY) {
            if t == self.t_s && skip > 0 {
                skip -= 1;
                continue;
            }
            if t >= stop_before_s {
                break;
            }
            if t == self.t_s {
                self.seen_at_t += 1;
            } else {
                self.t_s = t;
                self.seen_at_t = 1;
            }
            let prev = self.prev.replace((t, v));
            if let (Some((level, edge)), Some(p)) = (find, prev)
                && let Some(t_cross) = crossing(p, (t, v), level, edge)
            {
                return Some(t_cross);
            }
        }
        None
    }
}

// ---- trigger ----

/// A finished capture: the window around a crossing that the view freezes on.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub t_trig_s: f64,
    pub t0_s: f64,
    pub t1_s: f64,
    /// Level and source as they were when it triggered.
    pub level: f64,
    pub source: String,
}

/// Where the trigger stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TriggerState {
    Stopped,
    /// Looking for a crossing in the samples that arrive.
    Armed,
    /// Crossed at `t_trig_s`; waiting for the data to fill the window after it.
    Waiting {
        t_trig_s: f64,
        window_s: f64,
    },
}

/// A scope trigger on one signal. Armed, each [`update`](Self::update) reads only the samples
/// that arrived since the previous one.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub settings: TriggerSettings,
    state: TriggerState,
    scanner: CrossingScanner,
    /// The latest capture (kept when the trigger is stopped or re-armed).
    pub capture: Option<Capture>,
    /// Captures since the trigger was last armed by hand.
    pub captures: u64,
}

impl Trigger {
    pub fn new(settings: TriggerSettings) -> Self {
        Trigger {
            settings,
            state: TriggerState::Stopped,
            scanner: CrossingScanner::from_start(),
            capture: None,
            captures: 0,
        }
    }

    pub fn state(&self) -> TriggerState {
        self.state
    }

    pub fn is_armed(&self) -> bool {
        self.state != TriggerState::Stopped
    }

    /// Arms on the samples that arrive from now on (`series` is the source as it is now;
    /// `None` if it has no data yet, and then every sample it gets counts).
    pub fn arm(&mut self, series: Option<&Series>) {
        self.scanner = series.map_or_else(CrossingScanner::from_start, CrossingScanner::after_newest);
        self.state = TriggerState::Armed;
        self.captures = 0;
    }

    pub fn stop(&mut self) {
        self.state = TriggerState::Stopped;
    }

    /// Window after the trigger time, for a window of `window_s`.
    fn post_s(&self, window_s: f64) -> f64 {
        (1.0 - self.settings.pre_trigger.clamp(0.0, 1.0)) * window_s
    }

    /// Reads what the source series got since the last call; returns a capture when one has
    /// just completed (the newest one, if several completed at once in normal mode).
    pub fn update(&mut self, series: &Series, window_s: f64) -> Option<Capture> {
        let mut finished = None;
        loop {
            match self.state {
                TriggerState::Stopped => break,
                TriggerState::Armed => {
                    let find = Some((self.settings.level, self.settings.edge));
                    match self.scanner.scan(series, f64::INFINITY, find) {
                        Some(t_trig_s) => self.state = TriggerState::Waiting { t_trig_s, window_s },
                        None => break,
                    }
                }
                TriggerState::Waiting { t_trig_s, window_s } => {
                    let end_s = t_trig_s + self.post_s(window_s);
                    // Crossings inside the capture belong to it; the next one is looked for
                    // from its end on.
                    self.scanner.scan(series, end_s, None);
                    let reached = series.last().is_some_and(|(t, _)| t >= end_s);
                    if !reached {
                        break;
                    }
                    let capture = Capture {
                        t_trig_s,
                        t0_s: end_s - window_s,
                        t1_s: end_s,
                        level: self.settings.level,
                        source: self.settings.source.clone(),
                    };
                    self.capture = Some(capture.clone());
                    self.captures += 1;
                    finished = Some(capture);
                    self.state = match self.settings.mode {
                        TriggerMode::Single => TriggerState::Stopped,
                        TriggerMode::Normal => TriggerState::Armed,
                    };
                }
            }
        }
        finished
    }
}

// ---- statistics ----

pub use crate::telemetry::WindowStats;

/// Statistics of the samples with `t` in `[t0_s, t1_s)`; `None` if there is none that is not
/// NaN. Answered from the store's min/max levels and per-cell sums, so the cost does not grow
/// with the window's sample count.
pub fn window_stats(series: &Series, t0_s: f64, t1_s: f64) -> Option<WindowStats> {
    series.stats(t0_s, t1_s)
}

// ---- second value axis ----

/// How right-axis values are drawn on a plot's single value scale: a right value `r` is drawn
/// at `y = (r - offset) / scale`. `scale` is a 1-2-5 step and `offset` as round as the fit
/// allows (zero when it can be), so the left axis's grid lines land on round right-axis values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisMap {
    pub scale: f64,
    pub offset: f64,
}

impl Default for AxisMap {
    fn default() -> Self {
        AxisMap::IDENTITY
    }
}

/// Share of the left range the right-axis data may fill at most; the rest is room to choose a
/// round offset.
const RIGHT_FILL: f64 = 0.7;

impl AxisMap {
    pub const IDENTITY: AxisMap = AxisMap { scale: 1.0, offset: 0.0 };

    /// Plot coordinate of a right-axis value.
    pub fn to_plot(&self, right: f64) -> f64 {
        (right - self.offset) / self.scale
    }

    /// Right-axis value at a plot coordinate.
    pub fn to_right(&self, y: f64) -> f64 {
        self.offset + y * self.scale
    }

    /// Fits the right-axis data range `right` into the left axis range `left` (already with
    /// its margins): the right data fills 28 … 70 % of the height and stays inside it.
    pub fn fit(left: (f64, f64), right: (f64, f64)) -> AxisMap {
        let (l0, l1) = left;
        let (r0, r1) = right;
        let span_l = l1 - l0;
        if !(span_l > 0.0 && span_l.is_finite() && r0.is_finite() && r1.is_finite() && r0 <= r1) {
            return AxisMap::IDENTITY;
        }
        // A flat right signal gets the same minimal extent the left axis fit gives one.
        let span_r = (r1 - r0).max(2e-3 * r0.abs().max(r1.abs())).max(2e-6);
        let scale = nice_at_least(span_r / (RIGHT_FILL * span_l));
        // Centred, the offset would be `centred`; it may move by `room` either way (keeping
        // 1 % of the height clear at both ends). Within that, take zero if possible, else the
        // multiple of the coarsest 1-2-5 step: every finer step divides it, so the labels at
        // grid lines of that step or finer are whole multiples of their own step.
        let centred = 0.5 * (r0 + r1) - scale * 0.5 * (l0 + l1);
        let room = scale * 0.5 * (0.98 * span_l - (r1 - r0) / scale).max(0.0);
        let offset = if centred.abs() <= room {
            0.0
        } else {
            let mut step = 10f64.powf(span_l.log10().ceil());
            let mut found = centred;
            for _ in 0..60 {
                let q = scale * step;
                let candidate = (centred / q).round() * q;
                if (candidate - centred).abs() <= room {
                    found = candidate;
                    break;
                }
                step = next_finer(step);
            }
            found
        };
        AxisMap { scale, offset }
    }
}

/// The smallest 1-2-5 step (…, 0.5, 1, 2, 5, 10, …) at or above `x` (> 0).
fn nice_at_least(x: f64) -> f64 {
    let decade = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|s| *s >= x * (1.0 - 1e-12))
        .unwrap_or(10.0 * decade)
}

/// The 1-2-5 step below `step`.
fn next_finer(step: f64) -> f64 {
    let mantissa = step / 10f64.powf(step.log10().floor());
    if mantissa > 4.0 { step * 0.4 } else { step * 0.5 }
}

// ---- numbers on screen ----

/// A value with six significant digits, trailing zeros dropped (`1500`, `2.5`, `0.0125`);
/// very large or small magnitudes in exponent form.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor();
    if !(-4.0..9.0).contains(&magnitude) {
        return format!("{v:.5e}");
    }
    let decimals = (5.0 - magnitude).max(0.0) as usize;
    trim_zeros(format!("{v:.decimals$}"))
}

/// A session time to 0.1 ms, trailing zeros dropped.
pub fn format_time(t_s: f64) -> String {
    if !t_s.is_finite() {
        return format!("{t_s}");
    }
    trim_zeros(format!("{t_s:.4}"))
}

fn trim_zeros(s: String) -> String {
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s };
    if s == "-0" { "0".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: TriggerEdge = TriggerEdge::Rising;
    const F: TriggerEdge = TriggerEdge::Falling;
    const E: TriggerEdge = TriggerEdge::Either;

    fn series(samples: &[(f64, f64)]) -> Series {
        let mut s = Series::new(1000);
        for &(t, v) in samples {
            assert!(s.push(t, v));
        }
        s
    }

    fn all_crossings(samples: &[(f64, f64)], level: f64, edge: TriggerEdge) -> Vec<f64> {
        let s = series(samples);
        let mut scan = CrossingScanner::from_start();
        std::iter::from_fn(|| scan.scan(&s, f64::INFINITY, Some((level, edge)))).collect()
    }

    #[test]
    fn values_show_six_significant_digits() {
        assert_eq!(format_value(1500.0), "1500");
        assert_eq!(format_value(2.5), "2.5");
        assert_eq!(format_value(-0.0125), "-0.0125");
        assert_eq!(format_value(1234.56789), "1234.57");
        assert_eq!(format_value(1.0 / 3.0), "0.333333");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(-1e-12), "-1.00000e-12");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_time(12.5), "12.5");
        assert_eq!(format_time(1234.56789), "1234.5679");
        assert_eq!(format_time(-0.00001), "0");
    }

    #[test]
    fn crossing_times_are_interpolated_between_the_two_samples() {
        assert_eq!(crossing((1.0, 0.0), (2.0, 10.0), 2.5, R), Some(1.25));
        assert_eq!(crossing((1.0, 10.0), (2.0, 0.0), 2.5, F), Some(1.75));
        assert_eq!(crossing((1.0, 0.0), (2.0, 10.0), 2.5, F), None);
        assert_eq!(crossing((1.0, 10.0), (2.0, 0.0), 2.5, R), None);
        assert_eq!(crossing((1.0, 10.0), (2.0, 0.0), 2.5, E), Some(1.75));
        // Both sides on the same side of the level: nothing.
        assert_eq!(crossing((1.0, 3.0), (2.0, 10.0), 2.5, E), None);
        // A saturated reading: at the later sample.
        assert_eq!(crossing((1.0, 0.0), (2.0, f64::INFINITY), 2.5, R), Some(2.0));
        assert_eq!(crossing((1.0, 0.0), (2.0, f64::NEG_INFINITY), -2.5, F), Some(2.0));
    }

    #[test]
    fn a_sample_on_the_level_counts_as_above() {
        // Rising onto the level: the crossing is at that sample, and it is not counted twice.
        let up = [(0.0, 400.0), (1.0, 500.0), (2.0, 600.0)];
        assert_eq!(all_crossings(&up, 500.0, R), vec![1.0]);
        assert_eq!(all_crossings(&up, 500.0, F), Vec::<f64>::new());
        // Falling through a sample on the level: the line leaves the level at that sample.
        let down = [(0.0, 600.0), (1.0, 500.0), (2.0, 400.0)];
        assert_eq!(all_crossings(&down, 500.0, F), vec![1.0]);
        assert_eq!(all_crossings(&down, 500.0, R), Vec::<f64>::new());
        // Touching the level from below and going back: up, then down.
        let touch = [(0.0, 400.0), (1.0, 500.0), (2.0, 400.0)];
        assert_eq!(all_crossings(&touch, 500.0, R), vec![1.0]);
        assert_eq!(all_crossings(&touch, 500.0, F), vec![1.0]);
        assert_eq!(all_crossings(&touch, 500.0, E), vec![1.0, 1.0]);
        // Starting on the level is above: no rising edge from there.
        let start = [(0.0, 500.0), (1.0, 600.0)];
        assert!(all_crossings(&start, 500.0, R).is_empty());
    }

    #[test]
    fn nan_is_a_gap_nothing_crosses_through_it() {
        let gap = [(0.0, 0.0), (1.0, f64::NAN), (2.0, 10.0), (3.0, 0.0), (4.0, 10.0)];
        // 0 → NaN → 10 is not a crossing; 10 → 0 is falling; 0 → 10 rising at 3.25.
        assert_eq!(all_crossings(&gap, 2.5, R), vec![3.25]);
        assert_eq!(all_crossings(&gap, 2.5, F), vec![2.75]);
        assert_eq!(all_crossings(&gap, 2.5, E), vec![2.75, 3.25]);
        assert_eq!(crossing((0.0, 0.0), (1.0, 1.0), f64::NAN, E), None);
    }

    #[test]
    fn several_crossings_in_one_read_come_one_at_a_time() {
        let saw: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, if i % 2 == 0 { 0.0 } else { 10.0 })).collect();
        assert_eq!(all_crossings(&saw, 5.0, R), vec![0.5, 2.5, 4.5, 6.5, 8.5]);
        assert_eq!(all_crossings(&saw, 5.0, F), vec![1.5, 3.5, 5.5, 7.5]);
        assert_eq!(all_crossings(&saw, 5.0, E).len(), 9);
    }

    #[test]
    fn a_crossing_between_two_reads_is_found_and_samples_are_read_once() {
        let mut s = Series::new(1000);
        let mut scan = CrossingScanner::from_start();
        s.push(0.0, 0.0);
        s.push(1.0, 1.0);
        assert_eq!(scan.scan(&s, f64::INFINITY, Some((5.0, R))), None);
        // The next frame brings the sample beyond the level: the pair spans the two reads.
        s.push(2.0, 9.0);
        assert_eq!(scan.scan(&s, f64::INFINITY, Some((5.0, R))), Some(1.5));
        assert_eq!(scan.scan(&s, f64::INFINITY, Some((5.0, R))), None, "read twice");
        // Samples sharing a time: each is read once, the newer ones are still new.
        s.push(2.0, 0.0);
        assert_eq!(scan.scan(&s, f64::INFINITY, Some((5.0, F))), Some(2.0));
        s.push(2.0, 9.0);
        s.push(2.0, 0.0);
        assert_eq!(scan.scan(&s, f64::INFINITY, Some((5.0, E))), Some(2.0));
        assert_eq!(scan.scan(&s, f64::INFINITY, Some((5.0, E))), Some(2.0));
        assert_eq!(scan.scan(&s, f64::INFINITY, Some((5.0, E))), None);
    }

    #[test]
    fn a_scanner_started_after_the_newest_sample_ignores_history() {
        let s = series(&[(0.0, 0.0), (1.0, 10.0), (2.0, 0.0)]);
        let mut scan = CrossingScanner::after_newest(&s);
        assert_eq!(scan.scan(&s, f64::INFINITY, Some((5.0, E))), None);
        let mut s = s;
        s.push(3.0, 10.0);
        assert_eq!(scan.scan(&s, f64::INFINITY, Some((5.0, R))), Some(2.5));
    }

    fn settings(mode: TriggerMode, pre: f64) -> TriggerSettings {
        TriggerSettings { source: "d.x".into(), level: 5.0, edge: R, mode, pre_trigger: pre }
    }

    /// Pushes a square wave (period 1 s, high from x.5) sampled every 10 ms, over `[t0, t1)`.
    fn push_square(s: &mut Series, t0: f64, t1: f64) {
        let mut i = (t0 * 100.0).round() as i64;
        while (i as f64) / 100.0 < t1 {
            let t = i as f64 / 100.0;
            s.push(t, if t.fract() >= 0.5 { 10.0 } else { 0.0 });
            i += 1;
        }
    }

    #[test]
    fn single_trigger_waits_for_the_post_trigger_data_then_disarms() {
        let mut s = Series::new(10_000);
        push_square(&mut s, 0.0, 0.7); // a rising edge at 0.495 before arming
        let mut trig = Trigger::new(settings(TriggerMode::Single, 0.25));
        trig.arm(Some(&s));
        assert_eq!(trig.state(), TriggerState::Armed);
        push_square(&mut s, 0.7, 1.2);
        assert_eq!(trig.update(&s, 2.0), None);
        // Rising between 1.49 (0) and 1.50 (10), at level 5: 1.495.
        push_square(&mut s, 1.2, 1.6);
        assert_eq!(trig.update(&s, 2.0), None);
        let TriggerState::Waiting { t_trig_s, .. } = trig.state() else { panic!("{:?}", trig.state()) };
        assert!((t_trig_s - 1.495).abs() < 1e-9, "{t_trig_s}");
        // Post-trigger: 75 % of 2 s = 1.5 s → the data must reach 2.995.
        push_square(&mut s, 1.6, 2.99);
        assert_eq!(trig.update(&s, 2.0), None);
        push_square(&mut s, 2.99, 3.5);
        let c = trig.update(&s, 2.0).expect("capture");
        assert!((c.t1_s - 2.995).abs() < 1e-9 && (c.t0_s - 0.995).abs() < 1e-9, "{c:?}");
        assert!(((c.t_trig_s - c.t0_s) / (c.t1_s - c.t0_s) - 0.25).abs() < 1e-9);
        assert_eq!(trig.state(), TriggerState::Stopped);
        push_square(&mut s, 3.5, 6.0);
        assert_eq!(trig.update(&s, 2.0), None, "single mode captures once");
        assert_eq!(trig.captures, 1);
    }

    #[test]
    fn normal_trigger_rearms_after_the_capture_and_takes_the_next_crossing() {
        let mut s = Series::new(10_000);
        let mut trig = Trigger::new(settings(TriggerMode::Normal, 0.5));
        trig.arm(Some(&s));
        // Everything in one read: crossings at 0.495, 1.495, 2.495, …; a 1.2 s window with
        // 0.6 s after the trigger: a capture ends at 1.095, the crossing at 1.495 is the next.
        push_square(&mut s, 0.0, 2.2);
        let c = trig.update(&s, 1.2).expect("capture");
        assert!((c.t_trig_s - 1.495).abs() < 1e-9, "the newest completed capture: {c:?}");
        assert_eq!(trig.captures, 2);
        assert!(trig.is_armed());
        // A crossing inside a capture's post-trigger part does not start a new one.
        let mut trig = Trigger::new(TriggerSettings { edge: E, ..settings(TriggerMode::Normal, 0.0) });
        let mut s = Series::new(10_000);
        trig.arm(Some(&s));
        push_square(&mut s, 0.0, 0.8);
        assert_eq!(trig.update(&s, 1.0), None); // rising at 0.495, waits until 1.495
        push_square(&mut s, 0.8, 1.6);
        let c = trig.update(&s, 1.0).expect("capture");
        assert!((c.t_trig_s - 0.495).abs() < 1e-9, "{c:?}");
        // The falling edge at 0.995 lay inside it; the next is the rising one at 1.495, which
        // completes on the first sample at or after the capture's end.
        push_square(&mut s, 1.6, 3.1);
        let c = trig.update(&s, 1.0).expect("second capture");
        assert!((c.t_trig_s - 1.495).abs() < 1e-9, "{c:?}");
        assert!(
            matches!(trig.state(), TriggerState::Waiting { t_trig_s, .. } if (t_trig_s - 2.495).abs() < 1e-9)
        );
    }

    #[test]
    fn stopping_a_trigger_keeps_the_last_capture() {
        let mut s = Series::new(1000);
        let mut trig = Trigger::new(settings(TriggerMode::Normal, 1.0));
        trig.arm(None);
        push_square(&mut s, 0.0, 0.6);
        assert!(trig.update(&s, 1.0).is_some(), "100 % pre-trigger completes at once");
        trig.stop();
        push_square(&mut s, 0.6, 2.0);
        assert_eq!(trig.update(&s, 1.0), None);
        assert!(trig.capture.is_some());
    }

    #[test]
    fn window_stats_match_a_direct_computation_and_skip_nan() {
        let s = series(&[(0.0, 1.0), (1.0, -3.0), (2.0, f64::NAN), (3.0, 5.0), (4.0, 100.0)]);
        let st = window_stats(&s, 0.0, 4.0).unwrap();
        assert_eq!(st.count, 3);
        assert_eq!((st.min, st.max, st.peak_to_peak()), (-3.0, 5.0, 8.0));
        assert!((st.mean - 1.0).abs() < 1e-12);
        assert!((st.rms - (35.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(window_stats(&s, 2.0, 3.0), None, "only a NaN");
        assert_eq!(window_stats(&s, 10.0, 20.0), None);
    }

    #[test]
    fn axis_map_round_trips_and_keeps_right_data_inside_the_left_range() {
        let cases = [
            ((-1.0, 9.0), (0.0, 3000.0)),
            ((-0.2, 0.3), (1480.0, 1520.0)),
            ((100.0, 101.0), (-5e-4, 7e-4)),
            ((-8.0, 8.0), (-1500.0, 1500.0)),
            ((0.0, 1.0), (42.0, 42.0)),
            ((-2.0e-3, 1.0e-3), (-7.5e5, 2.5e5)),
        ];
        for (left, right) in cases {
            let m = AxisMap::fit(left, right);
            let span_l = left.1 - left.0;
            for r in [right.0, right.1, 0.5 * (right.0 + right.1)] {
                let back = m.to_right(m.to_plot(r));
                assert!((back - r).abs() <= 1e-9 * r.abs().max(1.0), "{left:?} {right:?}: {r} → {back}");
                let y = m.to_plot(r);
                assert!(y >= left.0 && y <= left.1, "{left:?} {right:?}: {r} drawn at {y}");
            }
            let drawn = (m.to_plot(right.1) - m.to_plot(right.0)) / span_l;
            assert!(
                right.0 == right.1 || (0.28..=0.7 + 1e-9).contains(&drawn),
                "{left:?} {right:?}: {drawn}"
            );
            // The scale is a 1-2-5 step; the offset at least a whole number of scaled tenths
            // of the left range's decade.
            let mantissa = m.scale / 10f64.powf(m.scale.log10().floor());
            assert!([1.0, 2.0, 5.0].iter().any(|x| (mantissa - x).abs() < 1e-9), "{m:?}");
            let tenth = m.scale * 10f64.powf(span_l.log10().floor() - 1.0);
            let n = m.offset / tenth;
            assert!((n - n.round()).abs() < 1e-6, "{left:?} {right:?}: {m:?}");
        }
    }

    #[test]
    fn left_grid_lines_land_on_round_right_values() {
        // Current -1 … 9 A on the left, speed 0 … 3000 rpm on the right: zero lines up.
        let m = AxisMap::fit((-1.0, 9.0), (0.0, 3000.0));
        assert_eq!(m.offset, 0.0, "{m:?}");
        for step in [0.1, 0.5, 1.0, 2.0, 5.0] {
            for i in -20..100 {
                let r = m.to_right(i as f64 * step) / (step * m.scale);
                assert!((r - r.round()).abs() < 1e-9, "{m:?}: step {step}, line {i}");
            }
        }
        // Far from zero: labels every 0.1 A on the left are whole multiples of their rpm step.
        let m = AxisMap::fit((-0.2, 0.3), (1480.0, 1520.0));
        for i in -2..=3 {
            let r = m.to_right(i as f64 * 0.1) / (0.1 * m.scale);
            assert!((r - r.round()).abs() < 1e-9, "{m:?}: line {i}");
        }
        assert_eq!(AxisMap::fit((1.0, 1.0), (0.0, 1.0)), AxisMap::IDENTITY);
        assert_eq!(nice_at_least(3.0), 5.0);
        assert_eq!(nice_at_least(0.02), 0.02);
        assert_eq!(nice_at_least(7.0), 10.0);
        assert_eq!(next_finer(10.0), 5.0);
        assert_eq!(next_finer(5.0), 2.0);
        assert_eq!(next_finer(2.0), 1.0);
    }
}
