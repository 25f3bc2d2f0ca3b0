//! One drive's telemetry store, shared between the drive's worker (which appends every sample
//! the moment it is decoded) and the UI (which reads it to draw). Samples reach the store on
//! the worker thread, so a UI that is slow, minimised or not painting at all loses nothing:
//! the history keeps growing up to its capacity and the recorder gets every batch.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::drive::{Sample, SignalSpec};

use super::Series;

/// Samples per second of a drive, measured on the sample timestamps.
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    window_start_s: Option<f64>,
    count: u64,
    pub rate_hz: f64,
}

impl RateMeter {
    pub fn tick(&mut self, t_s: f64) {
        let start = *self.window_start_s.get_or_insert(t_s);
        self.count += 1;
        let span = t_s - start;
        if span >= 1.0 {
            self.rate_hz = (self.count - 1) as f64 / span;
            self.window_start_s = Some(t_s);
            self.count = 1;
        }
    }
}

/// The signals of one drive and one [`Series`] per signal.
#[derive(Debug)]
pub struct DriveTelemetry {
    signals: Vec<SignalSpec>,
    series: Vec<Series>,
    capacity: usize,
    /// Frames per second (signal 0's samples).
    pub rate: RateMeter,
    /// Samples received over the session (all signals), including any the store refused.
    pub received: u64,
    /// Link-lost intervals, oldest first: start and (once a sample came again) end.
    gaps: std::collections::VecDeque<(f64, Option<f64>)>,
    /// The drive's announced signal index → the store's.
    map: Vec<u16>,
}

/// Signals one drive's store keeps over a session (a Serial Plotter drive whose labels change
/// between reconnects collects them).
pub const MAX_STORED_SIGNALS: usize = 256;

/// Link-lost intervals kept per drive (the oldest go first).
pub const MAX_GAPS: usize = 1000;

impl DriveTelemetry {
    pub fn new(capacity: usize) -> Self {
        DriveTelemetry {
            signals: Vec::new(),
            series: Vec::new(),
            capacity,
            rate: RateMeter::default(),
            received: 0,
            gaps: std::collections::VecDeque::new(),
            map: Vec::new(),
        }
    }

    /// The drive announced its signals (in its own order, which its samples' indices refer
    /// to). Signals are matched by name: a signal announced again, after a reconnect or in
    /// another place of the list (a Serial Plotter sketch's labels come back one by one),
    /// continues its series; a new one gets a new series; one no longer announced keeps its
    /// history. Returns the store's list, in the store's order, which [`Self::remap`] maps
    /// samples onto.
    pub fn set_signals(&mut self, announced: &[SignalSpec]) -> Vec<SignalSpec> {
        self.map.clear();
        for spec in announced {
            let index = match self.signals.iter().position(|s| s.name == spec.name) {
                Some(i) => {
                    self.signals[i] = spec.clone();
                    Some(i)
                }
                None if self.signals.len() < MAX_STORED_SIGNALS => {
                    self.signals.push(spec.clone());
                    self.series.push(Series::new(self.capacity));
                    Some(self.signals.len() - 1)
                }
                None => None,
            };
            self.map.push(index.map_or(u16::MAX, |i| i as u16));
        }
        self.signals.clone()
    }

    /// Turns the indices of samples from the drive (into its announced list) into the store's
    /// own; samples of signals the store has no room for get `u16::MAX` and are ignored.
    pub fn remap(&self, samples: &mut [Sample]) {
        for s in samples {
            s.signal = self.map.get(usize::from(s.signal)).copied().unwrap_or(u16::MAX);
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes how many samples each signal keeps; the newest ones are kept.
    pub fn set_capacity(&mut self, capacity: usize) {
        if capacity == self.capacity {
            return;
        }
        self.capacity = capacity;
        for series in &mut self.series {
            let mut resized = Series::new(capacity);
            let skip = series.len().saturating_sub(capacity);
            for (t_s, v) in series.samples_in(f64::NEG_INFINITY, f64::INFINITY).skip(skip) {
                resized.push(t_s, v);
            }
            *series = resized;
        }
    }

    /// Appends a batch in the store's indices (see [`Self::remap`]); samples of unknown signals
    /// are ignored.
    pub fn push(&mut self, samples: &[Sample]) {
        self.received += samples.len() as u64;
        // Samples from after the loss end it (those decoded before it may arrive late).
        if let Some(&(start, None)) = self.gaps.back()
            && let Some(after) = samples.iter().find(|s| s.t_s > start)
        {
            self.close_gap(after.t_s);
        }
        for s in samples {
            if let Some(series) = self.series.get_mut(s.signal as usize) {
                series.push(s.t_s, s.value);
            }
            if s.signal == 0 {
                self.rate.tick(s.t_s);
            }
        }
    }

    /// Breaks every trace at `t_s` (a NaN sample), so a plot shows where the link was lost
    /// instead of joining the last sample before to the first after.
    pub fn mark_gap(&mut self, t_s: f64) {
        if self.gaps.back().is_some_and(|(_, end)| end.is_none()) {
            return;
        }
        for series in &mut self.series {
            if series.last().is_none_or(|(t, _)| t <= t_s) {
                series.push(t_s, f64::NAN);
            }
        }
        if self.gaps.len() == MAX_GAPS {
            self.gaps.pop_front();
        }
        self.gaps.push_back((t_s, None));
    }

    /// Ends an open link-lost interval at `t_s` (the link is back, or the drive was
    /// disconnected by hand).
    pub fn close_gap(&mut self, t_s: f64) {
        if let Some((start, end @ None)) = self.gaps.back_mut() {
            *end = Some(t_s.max(*start));
        }
    }

    /// Link-lost intervals that overlap `t0 … t1`: start and end (`None` while still lost).
    pub fn gaps_in(&self, t0: f64, t1: f64) -> impl Iterator<Item = (f64, Option<f64>)> + '_ {
        self.gaps.iter().copied().filter(move |&(start, end)| start <= t1 && end.is_none_or(|e| e >= t0))
    }

    pub fn signals(&self) -> &[SignalSpec] {
        &self.signals
    }

    pub fn series(&self, signal: &str) -> Option<&Series> {
        let i = self.signals.iter().position(|s| s.name == signal)?;
        self.series.get(i)
    }

    /// Every signal with its store, in the drive's order.
    pub fn iter(&self) -> impl Iterator<Item = (&SignalSpec, &Series)> {
        self.signals.iter().zip(&self.series)
    }

    pub fn unit(&self, signal: &str) -> Option<&str> {
        self.signals.iter().find(|s| s.name == signal).map(|s| s.unit.as_str())
    }

    pub fn memory_bytes(&self) -> usize {
        self.series.iter().map(Series::memory_bytes).sum()
    }

    /// Oldest and newest sample time over every signal.
    pub fn time_span(&self) -> Option<(f64, f64)> {
        let first = self.series.iter().filter_map(Series::first_t).fold(f64::INFINITY, f64::min);
        let last = self.series.iter().filter_map(|s| s.last().map(|l| l.0)).fold(f64::NEG_INFINITY, f64::max);
        (first <= last).then_some((first, last))
    }
}

impl From<DriveTelemetry> for SharedTelemetry {
    fn from(t: DriveTelemetry) -> Self {
        SharedTelemetry(Arc::new(Mutex::new(t)))
    }
}

/// A drive's store as the worker and the UI share it.
#[derive(Debug, Clone)]
pub struct SharedTelemetry(Arc<Mutex<DriveTelemetry>>);

impl SharedTelemetry {
    pub fn new(capacity: usize) -> Self {
        SharedTelemetry(Arc::new(Mutex::new(DriveTelemetry::new(capacity))))
    }

    /// Locks the store. Holders keep the lock briefly (one batch, or one plot's queries); a
    /// panic while holding it leaves data that is still valid, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, DriveTelemetry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> SignalSpec {
        SignalSpec::new(name, "u")
    }

    #[test]
    fn signals_are_kept_by_name_whatever_the_drive_announces_later() {
        let mut t = DriveTelemetry::new(100);
        let at = |t_s, signal, value| Sample { t_s, signal, value };
        let feed = |t: &mut DriveTelemetry, mut batch: Vec<Sample>| {
            t.remap(&mut batch);
            t.push(&batch);
        };
        t.set_signals(&[spec("a")]);
        feed(&mut t, vec![at(0.0, 0, 1.0)]);
        // Grown: a keeps its history.
        assert_eq!(t.set_signals(&[spec("a"), spec("b")]), [spec("a"), spec("b")]);
        assert_eq!(t.series("a").unwrap().len(), 1);
        feed(&mut t, vec![at(1.0, 1, 2.0), at(1.0, 7, 2.0)]);
        assert_eq!(t.series("b").unwrap().len(), 1);
        assert_eq!(t.received, 3);
        assert_eq!(t.time_span(), Some((0.0, 1.0)));
        // A reconnect: the list starts empty and comes back in another order; samples go to the
        // series of their name and nothing stored is lost.
        assert_eq!(t.set_signals(&[]), [spec("a"), spec("b")]);
        assert_eq!(t.set_signals(&[spec("b"), spec("c"), spec("a")]), [spec("a"), spec("b"), spec("c")]);
        feed(&mut t, vec![at(2.0, 0, 20.0), at(2.0, 1, 30.0), at(2.0, 2, 10.0)]);
        let values =
            |t: &DriveTelemetry, name| t.series(name).unwrap().samples_in(0.0, 9.0).collect::<Vec<_>>();
        assert_eq!(values(&t, "a"), [(0.0, 1.0), (2.0, 10.0)]);
        assert_eq!(values(&t, "b"), [(1.0, 2.0), (2.0, 20.0)]);
        assert_eq!(values(&t, "c"), [(2.0, 30.0)]);
        t.set_capacity(1);
        assert_eq!(values(&t, "a"), [(2.0, 10.0)]);
        // Bounded over a session.
        let many: Vec<SignalSpec> = (0..2 * MAX_STORED_SIGNALS).map(|i| spec(&format!("s{i}"))).collect();
        assert_eq!(t.set_signals(&many).len(), MAX_STORED_SIGNALS);
        let mut late = vec![at(3.0, (2 * MAX_STORED_SIGNALS - 1) as u16, 1.0)];
        t.remap(&mut late);
        assert_eq!(late[0].signal, u16::MAX, "no room: ignored");
    }

    #[test]
    fn a_lost_link_breaks_the_traces_and_its_interval_is_kept() {
        let mut t = DriveTelemetry::new(100);
        t.set_signals(&[spec("a"), spec("b")]);
        let at = |t_s, signal, value| Sample { t_s, signal, value };
        t.push(&[at(1.0, 0, 1.0), at(1.0, 1, 2.0)]);
        t.mark_gap(1.5);
        t.mark_gap(1.7); // Still the same gap.
        assert_eq!(t.gaps_in(0.0, 9.0).collect::<Vec<_>>(), [(1.5, None)]);
        let a: Vec<(f64, f64)> = t.series("a").unwrap().samples_in(0.0, 9.0).collect();
        assert_eq!(a.len(), 2);
        assert!(a[1].0 == 1.5 && a[1].1.is_nan(), "the trace is broken where the link went: {a:?}");
        // Samples decoded before the loss that arrive after its mark do not end it.
        t.push(&[at(1.4, 1, 2.5)]);
        assert_eq!(t.gaps_in(0.0, 9.0).collect::<Vec<_>>(), [(1.5, None)]);
        t.push(&[at(4.0, 0, 3.0)]);
        t.mark_gap(6.0);
        assert_eq!(t.gaps_in(0.0, 9.0).collect::<Vec<_>>(), [(1.5, Some(4.0)), (6.0, None)]);
        assert_eq!(t.gaps_in(4.5, 5.5).count(), 0, "between the gaps");
        assert_eq!(t.gaps_in(3.0, 3.5).collect::<Vec<_>>(), [(1.5, Some(4.0))]);
        assert_eq!(t.gaps_in(100.0, 200.0).collect::<Vec<_>>(), [(6.0, None)], "still lost");
        // Closed by hand (reconnected, or disconnected while lost).
        t.close_gap(7.0);
        t.close_gap(8.0);
        assert_eq!(t.gaps_in(6.5, 9.0).collect::<Vec<_>>(), [(6.0, Some(7.0))]);
        // Bounded: the oldest go first.
        for i in 0..(2 * MAX_GAPS) {
            let t0 = 10.0 + i as f64;
            t.push(&[at(t0, 0, 0.0)]);
            t.mark_gap(t0 + 0.5);
        }
        let kept: Vec<_> = t.gaps_in(f64::NEG_INFINITY, f64::INFINITY).collect();
        assert_eq!(kept.len(), MAX_GAPS);
        assert_eq!(kept.last(), Some(&(10.0 + (2 * MAX_GAPS - 1) as f64 + 0.5, None)));
    }
}
