//! Per-signal sample store behind the live plots.
//!
//! A [`Series`] keeps the newest `capacity` raw samples of one signal in a fixed-capacity ring
//! (times and values as two `f64` arrays, structure-of-arrays) plus a hierarchy of min/max
//! *levels*: level `k` (k ≥ 1) holds one `[min, max]` cell per 16^k consecutive samples, each
//! cell folding 16 cells of the level below. From level 2 up a cell also stores the offsets
//! (`u32`) of the samples where its min and max first occur. Memory: 16 bytes per sample of
//! capacity for the raw ring plus ≈1.1 bytes for the levels (16 B per 16 samples at level 1,
//! 24 B per 16^k samples above: 1/14.5 of the raw storage). Levels are updated in O(1)
//! amortised time per push (a push only climbs while it changes a cell or starts one, and there
//! are at most 8 levels) and nothing is allocated after [`Series::new`].
//!
//! # Indices
//!
//! Every accepted sample gets an absolute index from a monotonic counter (reset only by
//! [`Series::clear`]). Cell `j` of level `k` covers the absolute indices `[j·16^k, (j+1)·16^k)`
//! whatever the ring position, so the levels stay valid while the ring wraps. Each level is
//! itself a ring, long enough (`(capacity-1)/16^k + 1` cells) to hold every cell whose samples
//! are all still stored, plus the cell being filled at the head (which is exact after every
//! push). A query only ever uses cells that lie entirely inside the queried index range, and
//! query ranges never start before the oldest stored sample, so a cell whose older samples were
//! already overwritten is never consulted: the evicted-overlap part of a range is always covered
//! by raw samples or finer cells.
//!
//! # Spike-true view (M4)
//!
//! [`Series::view`] splits a time window into pixel columns and emits, per non-empty column,
//! its first, min, max and last sample. Column boundaries are found by a galloping search from
//! the previous boundary (the ring is time-sorted). A short column is scanned; otherwise its
//! min/max come from the coarsest cells that fit inside it plus finer cells and raw samples at
//! the ragged ends (at most 15 per level and side), and the sample where an extreme occurs is
//! read from the winning cell's offset (or, for a level-1 cell, found among its 16 samples).
//! Cost per query is O(width · log n), independent of how many samples the window holds. When
//! the window's data is much larger than the caches, columns are processed in a short software
//! pipeline with prefetching, so that memory latency of neighbouring columns overlaps.
//!
//! # Non-finite values
//!
//! * A sample with a non-finite time, or a time earlier than the newest stored one, is rejected
//!   and counted ([`Series::rejected`]).
//! * A `NaN` value is stored (it is returned by [`Series::samples_in`], [`Series::nearest`],
//!   [`Series::last`], and can be the first/last point of a view column, which makes the plot
//!   break the line there) but is ignored by every min/max: levels, [`Series::min_max`] and
//!   the min/max points of [`Series::view`]. A window whose values are all NaN has no
//!   min/max ([`Series::min_max`] returns `None`).
//! * `±inf` values are stored and take part in min/max as ordinary ordered values: an
//!   overflowing or saturated reading is exactly the kind of spike the plot must not hide.
//!   Consequently [`Series::min_max`] can return infinite bounds; y auto-scaling must clamp.

use std::fmt;

/// log2 of the fan-out between levels.
const FANOUT_BITS: u32 = 4;
/// Cells (or raw samples) folded into one cell of the next level.
const FANOUT: u64 = 1 << FANOUT_BITS;
/// `[min, max]` of a cell that holds no non-NaN value yet.
const EMPTY_CELL: [f64; 2] = [f64::INFINITY, f64::NEG_INFINITY];
/// Upper bound on the number of levels: cells of at most 16^8 = 2^32 samples, so that offsets
/// within a cell fit a `u32`. (Only a capacity beyond 6.9e10 samples would want more.)
const MAX_LEVELS: usize = 8;
/// Windows with fewer samples than this (16 B each) are assumed to be in cache: their view
/// query skips the prefetching pipeline. (Lower in tests, so that both paths are exercised.)
const PIPELINE_MIN_SAMPLES: u64 = if cfg!(test) { 2000 } else { 1 << 16 };
/// How many columns ahead the view pipeline prefetches a boundary.
const PREFETCH_COLUMNS: u64 = 1;
/// Columns with at most this many samples are scanned directly.
const SHORT_COLUMN: u64 = 32;
/// `Pick::level` of "nothing found".
const NO_LEVEL: usize = usize::MAX;

#[cfg(test)]
thread_local! {
    /// Elements (samples, cells, search probes) touched by queries on this thread — lets the
    /// tests prove that a view never scans the samples of a densely populated window.
    static WORK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[inline(always)]
fn count_work(_n: u64) {
    #[cfg(test)]
    WORK.with(|w| w.set(w.get() + _n));
}

/// One min/max level: a ring of `[min, max]` cells, cell `j` covering absolute sample indices
/// `[j << shift, (j + 1) << shift)`. A cell without any non-NaN sample is [`EMPTY_CELL`]
/// (so `min <= max` exactly when the cell has a value).
#[derive(Clone)]
struct Level {
    shift: u32,
    cells: Vec<[f64; 2]>,
    /// Levels ≥ 2 only (empty for level 1): offsets within the cell of the first sample holding
    /// the min and the max, so a query finds where an extreme occurs without descending.
    at: Vec<[u32; 2]>,
    /// Ring position of the cell that contains the newest sample.
    head: usize,
}

impl Level {
    /// Ring position of cell `cell`, given the index of the cell holding the newest sample.
    #[inline]
    fn pos(&self, newest_cell: u64, cell: u64) -> usize {
        debug_assert!(cell <= newest_cell && newest_cell - cell < self.cells.len() as u64);
        let d = (newest_cell - cell) as usize;
        if d <= self.head { self.head - d } else { self.head + self.cells.len() - d }
    }
}

/// Where an extreme was found. While a range is being folded: somewhere in the run of `len`
/// elements starting at absolute index `idx` and ring position `pos` — raw samples if
/// `level == 0`, cells of level `level` otherwise (the exact element is only searched for in the
/// winning run, see [`Series::settle`]). `level == NO_LEVEL` means no non-NaN value was seen.
#[derive(Clone, Copy)]
struct Pick {
    val: f64,
    level: usize,
    idx: u64,
    pos: usize,
    len: usize,
}

impl Pick {
    const NONE: Pick = Pick { val: f64::NAN, level: NO_LEVEL, idx: 0, pos: 0, len: 0 };

    fn found(&self) -> bool {
        self.level != NO_LEVEL
    }
}

/// A column of a view query in flight: its samples `[a, b)` and extremes.
#[derive(Clone, Copy)]
struct Column {
    a: u64,
    b: u64,
    e: Extremes,
}

impl Column {
    const EMPTY: Column = Column { a: 0, b: 1, e: Extremes::NONE };
}

#[derive(Clone, Copy)]
struct Extremes {
    min: Pick,
    max: Pick,
}

/// Fixed-capacity, time-sorted store of one signal's samples with min/max levels.
///
/// See the [module documentation](self) for the layout and the handling of non-finite values.
#[derive(Clone)]
pub struct Series {
    /// Sample times, ring buffer; `t.len()` is the capacity.
    t: Vec<f64>,
    /// Sample values, same ring positions as `t`.
    v: Vec<f64>,
    /// Absolute index of the next sample (= samples accepted since construction or `clear`).
    next: u64,
    /// Ring position where sample `next` will be written.
    write: usize,
    /// Time of the newest sample, `-inf` when empty.
    last_t: f64,
    /// Level `k` (k ≥ 1) is `levels[k - 1]`; only levels with 16^k ≤ capacity exist.
    levels: Vec<Level>,
    total_pushed: u64,
    rejected: u64,
}

impl fmt::Debug for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Series")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("first_t", &self.first_t())
            .field("last", &self.last())
            .field("total_pushed", &self.total_pushed)
            .field("rejected", &self.rejected)
            .field("levels", &self.levels.len())
            .finish()
    }
}

/// Splits `len` ring elements starting at position `start` into the (up to) two contiguous
/// slices that hold them, in order.
#[inline]
fn ring_slices<T>(buf: &[T], start: usize, len: usize) -> (&[T], &[T]) {
    let n = buf.len();
    if start + len <= n { (&buf[start..start + len], &[]) } else { (&buf[start..], &buf[..start + len - n]) }
}

/// Hints the CPU to fetch `slice[i]` into cache (no-op when out of bounds or not on x86-64).
#[inline(always)]
fn prefetch<T>(slice: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(x) = slice.get(i) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is only a hint, it never faults; the address is in bounds anyway.
        #[allow(unused_unsafe)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>((x as *const T).cast::<i8>())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slice, i);
}

/// `t0 < t1` (false if either is NaN).
#[inline]
fn is_window(t0: f64, t1: f64) -> bool {
    t0 < t1
}

/// Left edge of pixel column `col` of the window `[t0, t1)` split into `width` columns
/// (`col == width` gives `t1`). Non-decreasing in `col`; column `c` holds the samples with
/// `column_edge(c) <= t < column_edge(c + 1)`.
#[inline]
fn column_edge(t0: f64, t1: f64, width: usize, col: usize) -> f64 {
    if col >= width { t1 } else { (t0 + (t1 - t0) * (col as f64 / width as f64)).min(t1) }
}

/// Min and max of the non-NaN values of `s`; `min > max` (`+inf`, `-inf`) when there are none.
#[inline]
fn values_min_max(s: &[f64]) -> (f64, f64) {
    // Four independent accumulators for instruction-level parallelism. `x < m` is false for a
    // NaN `x`, which is how NaN is ignored.
    let mut mn = [f64::INFINITY; 4];
    let mut mx = [f64::NEG_INFINITY; 4];
    let mut chunks = s.chunks_exact(4);
    for c in &mut chunks {
        for k in 0..4 {
            mn[k] = if c[k] < mn[k] { c[k] } else { mn[k] };
            mx[k] = if c[k] > mx[k] { c[k] } else { mx[k] };
        }
    }
    for &x in chunks.remainder() {
        mn[0] = if x < mn[0] { x } else { mn[0] };
        mx[0] = if x > mx[0] { x } else { mx[0] };
    }
    (mn[0].min(mn[1]).min(mn[2].min(mn[3])), mx[0].max(mx[1]).max(mx[2].max(mx[3])))
}

/// Min over the cells' minima and max over their maxima (empty cells contribute nothing).
#[inline]
fn cells_min_max(s: &[[f64; 2]]) -> (f64, f64) {
    let mut mn = [f64::INFINITY; 2];
    let mut mx = [f64::NEG_INFINITY; 2];
    let mut chunks = s.chunks_exact(2);
    for c in &mut chunks {
        for k in 0..2 {
            mn[k] = if c[k][0] < mn[k] { c[k][0] } else { mn[k] };
            mx[k] = if c[k][1] > mx[k] { c[k][1] } else { mx[k] };
        }
    }
    for c in chunks.remainder() {
        mn[0] = if c[0] < mn[0] { c[0] } else { mn[0] };
        mx[0] = if c[1] > mx[0] { c[1] } else { mx[0] };
    }
    (mn[0].min(mn[1]), mx[0].max(mx[1]))
}

impl Extremes {
    const NONE: Extremes = Extremes { min: Pick::NONE, max: Pick::NONE };

    /// Folds in the run of raw values `s` (absolute index `idx` and ring position `pos` of its
    /// first sample), or of the cells of `level` if `level > 0`, whose min and max are `mn`,
    /// `mx`. Runs must be fed in index order: only a strict improvement replaces the current
    /// pick, so the first occurrence wins.
    #[inline]
    fn add_run(&mut self, (mn, mx): (f64, f64), level: usize, idx: u64, pos: usize, len: usize) {
        if mn > mx {
            return; // empty or all NaN
        }
        if !self.min.found() || mn < self.min.val {
            self.min = Pick { val: mn, level, idx, pos, len };
        }
        if !self.max.found() || mx > self.max.val {
            self.max = Pick { val: mx, level, idx, pos, len };
        }
    }
}

impl Series {
    /// A series keeping the newest `capacity` samples (a capacity of 0 is treated as 1); the
    /// oldest are overwritten. Allocates everything here — the raw ring and all levels — and
    /// never on [`push`](Self::push).
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.max(1);
        let mut levels = Vec::new();
        let mut shift = FANOUT_BITS;
        while levels.len() < MAX_LEVELS && (1u64 << shift) <= cap as u64 {
            // Enough cells for every cell that is fully stored or being filled: the cells of
            // level k that start at or after the oldest of `cap` consecutive stored indices
            // number at most (cap-1)/16^k + 1. (A cell whose oldest samples were overwritten
            // may itself be overwritten; it is never used.)
            let cells = ((cap as u64 - 1) >> shift) as usize + 1;
            let at = if shift > FANOUT_BITS { vec![[0; 2]; cells] } else { Vec::new() };
            levels.push(Level { shift, cells: vec![EMPTY_CELL; cells], at, head: 0 });
            shift += FANOUT_BITS;
        }
        levels.shrink_to_fit();
        Series {
            t: vec![0.0; cap],
            v: vec![0.0; cap],
            next: 0,
            write: 0,
            last_t: f64::NEG_INFINITY,
            levels,
            total_pushed: 0,
            rejected: 0,
        }
    }

    /// Number of raw samples kept.
    pub fn capacity(&self) -> usize {
        self.t.len()
    }

    /// Number of samples currently stored (≤ capacity).
    pub fn len(&self) -> usize {
        (self.next - self.oldest()) as usize
    }

    /// True when no sample is stored.
    pub fn is_empty(&self) -> bool {
        self.next == 0
    }

    /// Appends a sample, overwriting the oldest one when full. O(1) amortised, no allocation.
    ///
    /// Returns `false` and counts the sample in [`rejected`](Self::rejected) (storing nothing)
    /// if `t_s` is not finite or is earlier than the newest stored sample's time; equal times
    /// are accepted. `NaN` values are stored but ignored by all min/max; `±inf` values are
    /// ordinary ordered values (see the [module documentation](self)).
    pub fn push(&mut self, t_s: f64, value: f64) -> bool {
        if !t_s.is_finite() || t_s < self.last_t {
            self.rejected += 1;
            return false;
        }
        let i = self.next;
        let p = self.write;
        self.t[p] = t_s;
        self.v[p] = value;
        self.write = if p + 1 == self.t.len() { 0 } else { p + 1 };
        self.next = i + 1;
        self.last_t = t_s;
        self.total_pushed += 1;

        // Levels: a sample that starts a cell resets it; otherwise it is folded in, and the
        // climb stops as soon as it changes neither the min nor the max of a cell (the cells
        // above contain that cell, so they cannot change either).
        let fresh = if value.is_nan() { EMPTY_CELL } else { [value, value] };
        let (mut climb_min, mut climb_max) = (!value.is_nan(), !value.is_nan());
        for level in &mut self.levels {
            let offset = i & ((1u64 << level.shift) - 1);
            if offset == 0 {
                if i != 0 {
                    level.head = if level.head + 1 == level.cells.len() { 0 } else { level.head + 1 };
                }
                level.cells[level.head] = fresh;
                if let Some(at) = level.at.get_mut(level.head) {
                    *at = [0; 2];
                }
                continue;
            }
            if !(climb_min || climb_max) {
                break;
            }
            let cell = &mut level.cells[level.head];
            let (new_min, new_max) = (climb_min && value < cell[0], climb_max && value > cell[1]);
            if new_min {
                cell[0] = value;
            }
            if new_max {
                cell[1] = value;
            }
            if let Some(at) = level.at.get_mut(level.head) {
                if new_min {
                    at[0] = offset as u32;
                }
                if new_max {
                    at[1] = offset as u32;
                }
            }
            climb_min = new_min;
            climb_max = new_max;
        }
        true
    }

    /// Removes all samples. Keeps the allocation and the lifetime counters
    /// ([`total_pushed`](Self::total_pushed), [`rejected`](Self::rejected)); after a clear any
    /// finite time is accepted again.
    pub fn clear(&mut self) {
        self.next = 0;
        self.write = 0;
        self.last_t = f64::NEG_INFINITY;
        for level in &mut self.levels {
            level.head = 0;
        }
    }

    /// Time of the oldest stored sample.
    pub fn first_t(&self) -> Option<f64> {
        (!self.is_empty()).then(|| self.t_at(self.oldest()))
    }

    /// The newest sample `(t, value)`.
    pub fn last(&self) -> Option<(f64, f64)> {
        (!self.is_empty()).then(|| self.sample(self.next - 1))
    }

    /// Samples accepted over the lifetime of the series (monotonic: not reduced by overwrite or
    /// [`clear`](Self::clear); rejected pushes are not included).
    pub fn total_pushed(&self) -> u64 {
        self.total_pushed
    }

    /// Pushes rejected over the lifetime of the series (non-finite or out-of-order time).
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Approximate heap bytes: 16 per sample of capacity plus the levels (≈1.1 per sample).
    pub fn memory_bytes(&self) -> usize {
        let levels: usize = self
            .levels
            .iter()
            .map(|l| l.cells.capacity() * size_of::<[f64; 2]>() + l.at.capacity() * size_of::<[u32; 2]>())
            .sum();
        (self.t.capacity() + self.v.capacity()) * size_of::<f64>()
            + self.levels.capacity() * size_of::<Level>()
            + levels
    }

    /// The stored sample nearest in time to `t_s` (for hover readouts), O(log n). When several
    /// samples are equally near, the newest of them is returned. `None` if empty or `t_s` is NaN.
    pub fn nearest(&self, t_s: f64) -> Option<(f64, f64)> {
        if self.is_empty() || t_s.is_nan() {
            return None;
        }
        let (lo, hi) = (self.oldest(), self.next);
        let i = self.lower_bound(lo, hi, t_s);
        let i = if i == hi {
            hi - 1
        } else if i == lo || self.t_at(i) - t_s <= t_s - self.t_at(i - 1) {
            // The last of the samples sharing the time of sample i.
            self.lower_bound(i, hi, self.t_at(i).next_up()) - 1
        } else {
            i - 1
        };
        Some(self.sample(i))
    }

    /// M4 view query: splits `[t0_s, t1_s)` into `width_px` equal pixel columns and writes to
    /// `out` (cleared first), in time order, for every non-empty column its first, min, max and
    /// last sample as `[t, value]` points — each an actual stored sample, min and max at the
    /// times where they occur (first occurrence), in sample order, without duplicates (a
    /// one-sample column gives one point). Preceded by the last sample before `t0_s` and
    /// followed by the first sample at or after `t1_s`, if any, so lines reach the plot edges.
    ///
    /// At most `4 · width_px + 2` points whatever the history length; cost
    /// O(width_px · log n) — dense columns are answered from the min/max levels, never by
    /// scanning their samples. Empty output unless `t0_s < t1_s`, `t1_s - t0_s` is finite and
    /// `width_px > 0`.
    pub fn view(&self, t0_s: f64, t1_s: f64, width_px: usize, out: &mut Vec<[f64; 2]>) {
        out.clear();
        if width_px == 0 || self.is_empty() || !is_window(t0_s, t1_s) || !(t1_s - t0_s).is_finite() {
            return;
        }
        let (lo, hi) = (self.oldest(), self.next);
        let start = self.lower_bound(lo, hi, t0_s);
        let end = self.lower_bound(start, hi, t1_s);
        let in_window = end - start;
        out.reserve(4 * (width_px as u64).min(in_window) as usize + 2);
        if start > lo {
            self.push_point(out, start - 1);
        }
        if in_window < PIPELINE_MIN_SAMPLES {
            self.for_each_column(t0_s, t1_s, width_px, start, end, |a, b| {
                let mut c = self.pick_column(a, b, false);
                self.resolve_column(&mut c, false);
                self.emit_column(&c, out);
            });
        } else {
            // The window's data is far larger than the caches: columns go through a three-stage
            // pipeline so that the memory accesses of neighbouring columns overlap instead of
            // queueing: (1) find the extremes' cells, prefetching the neighbourhood of the next
            // boundary (predicted from this column's length) and the extremes' offsets; (2) one
            // column later, resolve the extremes' samples and prefetch their times; (3) one
            // column later again, emit. Column k lives in `ring[k % 3]`.
            let mut ring = [Column::EMPTY; 3];
            let mut k = 0usize;
            self.for_each_column(t0_s, t1_s, width_px, start, end, |a, b| {
                let next_b = b + PREFETCH_COLUMNS * (b - a);
                if next_b < end {
                    self.prefetch_boundary(next_b, b - a);
                }
                ring[k % 3] = self.pick_column(a, b, true);
                if k >= 2 {
                    self.emit_column(&ring[(k - 2) % 3], out);
                }
                if k >= 1 {
                    self.resolve_column(&mut ring[(k - 1) % 3], true);
                }
                k += 1;
            });
            if k >= 2 {
                self.emit_column(&ring[(k - 2) % 3], out);
            }
            if k >= 1 {
                self.resolve_column(&mut ring[(k - 1) % 3], false);
                self.emit_column(&ring[(k - 1) % 3], out);
            }
        }
        if end < hi {
            self.push_point(out, end);
        }
    }

    /// Min and max value over the samples with `t` in `[t0_s, t1_s)`, from the levels
    /// (O(log n)); NaN values are ignored, `±inf` are not. `None` if the window holds no
    /// sample with a non-NaN value.
    pub fn min_max(&self, t0_s: f64, t1_s: f64) -> Option<(f64, f64)> {
        if self.is_empty() || !is_window(t0_s, t1_s) {
            return None;
        }
        let (lo, hi) = (self.oldest(), self.next);
        let a = self.lower_bound(lo, hi, t0_s);
        let b = self.lower_bound(a, hi, t1_s);
        if a == b {
            return None;
        }
        let e = self.range_extremes(a, b);
        e.min.found().then_some((e.min.val, e.max.val))
    }

    /// The stored samples with `t` in `[t0_s, t1_s)`, oldest first (for CSV export and tests).
    pub fn samples_in(&self, t0_s: f64, t1_s: f64) -> impl Iterator<Item = (f64, f64)> + '_ {
        let (a, b) = if self.is_empty() || !is_window(t0_s, t1_s) {
            (0, 0)
        } else {
            let a = self.lower_bound(self.oldest(), self.next, t0_s);
            (a, self.lower_bound(a, self.next, t1_s))
        };
        (a..b).map(move |i| self.sample(i))
    }

    // ---- internals ----

    /// Absolute index of the oldest stored sample.
    #[inline]
    fn oldest(&self) -> u64 {
        self.next.saturating_sub(self.t.len() as u64)
    }

    /// Ring position of the stored sample with absolute index `i`.
    #[inline]
    fn pos(&self, i: u64) -> usize {
        debug_assert!(i >= self.oldest() && i < self.next);
        let d = (self.next - i) as usize;
        if d <= self.write { self.write - d } else { self.write + self.t.len() - d }
    }

    #[inline]
    fn t_at(&self, i: u64) -> f64 {
        self.t[self.pos(i)]
    }

    #[inline]
    fn sample(&self, i: u64) -> (f64, f64) {
        let p = self.pos(i);
        (self.t[p], self.v[p])
    }

    #[inline]
    fn push_point(&self, out: &mut Vec<[f64; 2]>, i: u64) {
        let p = self.pos(i);
        out.push([self.t[p], self.v[p]]);
    }

    /// Prefetches what a column boundary at sample `i` will touch: its time, the 16-block of
    /// raw values and, on each level whose cells are smaller than a column of `span` samples,
    /// the 16-block of cells around it (where the ragged runs of both columns lie).
    #[inline]
    fn prefetch_boundary(&self, i: u64, span: u64) {
        let (oldest, newest) = (self.oldest(), self.next - 1);
        prefetch(&self.t, self.pos(i));
        let block = i & !(FANOUT - 1);
        for k in [0, 7, 15] {
            if block + k >= oldest && block + k <= newest {
                prefetch(&self.v, self.pos(block + k));
            }
        }
        for lv in &self.levels {
            if (1u64 << lv.shift) > span {
                break;
            }
            let (j, head) = (i >> lv.shift, newest >> lv.shift);
            let block = j & !(FANOUT - 1);
            for k in [0, 4, 8, 12, 15] {
                let m = block + k;
                if m <= head && head - m < lv.cells.len() as u64 {
                    prefetch(&lv.cells, lv.pos(head, m));
                }
            }
        }
    }

    /// First index in `[lo, hi)` whose time is `>= edge`, or `hi`; binary search.
    fn lower_bound(&self, lo: u64, hi: u64, edge: f64) -> u64 {
        if lo >= hi {
            return hi;
        }
        count_work(u64::BITS as u64 - (hi - lo).leading_zeros() as u64);
        let (older, newer) = ring_slices(&self.t, self.pos(lo), (hi - lo) as usize);
        if older[older.len() - 1] >= edge {
            lo + older.partition_point(|&t| t < edge) as u64
        } else {
            lo + (older.len() + newer.partition_point(|&t| t < edge)) as u64
        }
    }

    /// Same as [`Self::lower_bound`], galloping outwards from `guess`: O(log |answer - guess|).
    fn lower_bound_near(&self, lo: u64, hi: u64, edge: f64, guess: u64) -> u64 {
        let guess = guess.clamp(lo, hi);
        // The guess is usually exact or one short.
        if guess > lo && guess < hi {
            count_work(2);
            if self.t_at(guess) >= edge {
                if self.t_at(guess - 1) < edge {
                    return guess;
                }
            } else if guess + 1 == hi || self.t_at(guess + 1) >= edge {
                return guess + 1;
            }
        }
        let mut step = 1;
        if guess < hi && self.t_at(guess) < edge {
            let mut below = guess; // t(below) < edge
            loop {
                count_work(1);
                let probe = below + step;
                if probe >= hi {
                    return self.lower_bound(below + 1, hi, edge);
                }
                if self.t_at(probe) >= edge {
                    return self.lower_bound(below + 1, probe, edge);
                }
                below = probe;
                step *= 2;
            }
        } else {
            let mut above = guess; // answer <= above
            loop {
                count_work(1);
                if above == lo {
                    return lo;
                }
                let probe = above.saturating_sub(step).max(lo);
                if self.t_at(probe) < edge {
                    return self.lower_bound(probe + 1, above, edge);
                }
                above = probe;
                step *= 2;
            }
        }
    }

    /// Calls `f(a, b)` in order for every non-empty pixel column, `[a, b)` being its samples.
    /// The boundaries are found by galloping from the previous one, guessing that a column
    /// holds as many samples as the previous non-empty one (exact for a steady sample rate).
    #[inline]
    fn for_each_column(
        &self,
        t0_s: f64,
        t1_s: f64,
        width_px: usize,
        start: u64,
        end: u64,
        mut f: impl FnMut(u64, u64),
    ) {
        let mut a = start;
        let mut guess = (end - start) / width_px as u64;
        let mut col = 0;
        while a < end {
            col += 1;
            debug_assert!(col <= width_px);
            let edge = column_edge(t0_s, t1_s, width_px, col);
            let b = self.lower_bound_near(a, end, edge, a + guess);
            if b > a {
                guess = b - a;
                f(a, b);
            }
            a = b;
        }
    }

    /// Pipeline stage 1 for the column holding the samples `[a, b)` (`a < b`): its extremes,
    /// settled on a sample or cell, with what [`Self::locate`] will read prefetched.
    #[inline]
    fn pick_column(&self, a: u64, b: u64, prefetching: bool) -> Column {
        if b - a <= SHORT_COLUMN {
            return Column { a, b, e: self.scan_extremes(a, b) };
        }
        let mut e = self.range_extremes(a, b);
        if e.min.found() {
            for (side, pick) in [&mut e.min, &mut e.max].into_iter().enumerate() {
                self.settle(pick, side);
                if !prefetching {
                    continue;
                }
                match pick.level {
                    0 => prefetch(&self.t, pick.pos),
                    1 => {
                        let p = self.pos(pick.idx << FANOUT_BITS);
                        prefetch(&self.v, p);
                        prefetch(&self.v, p + FANOUT as usize - 1);
                    }
                    level => prefetch(&self.levels[level - 1].at, pick.pos),
                }
            }
        }
        Column { a, b, e }
    }

    /// Extremes (first occurrences, NaN ignored) of the raw samples `[a, b)` by a direct scan,
    /// for short columns.
    #[inline]
    fn scan_extremes(&self, a: u64, b: u64) -> Extremes {
        count_work(b - a);
        let p = self.pos(a);
        let (s1, s2) = ring_slices(&self.v, p, (b - a) as usize);
        let (mut mn, mut mx) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut kmin, mut kmax) = (usize::MAX, usize::MAX);
        for (base, run) in [(0, s1), (s1.len(), s2)] {
            for (k, &x) in run.iter().enumerate() {
                if x < mn {
                    (mn, kmin) = (x, base + k);
                }
                if x > mx {
                    (mx, kmax) = (x, base + k);
                }
            }
        }
        // Only +inf values: no `x < mn` ever held (and symmetrically for -inf).
        if kmin == usize::MAX {
            kmin = kmax;
        } else if kmax == usize::MAX {
            kmax = kmin;
        }
        if kmin == usize::MAX {
            return Extremes::NONE; // all NaN
        }
        let cap = self.v.len();
        let pick = |k: usize| {
            let pos = if p + k >= cap { p + k - cap } else { p + k };
            Pick { val: self.v[pos], level: 0, idx: a + k as u64, pos, len: 1 }
        };
        Extremes { min: pick(kmin), max: pick(kmax) }
    }

    /// Pipeline stage 2: turns the column's extremes into raw samples and prefetches their
    /// times.
    #[inline]
    fn resolve_column(&self, c: &mut Column, prefetching: bool) {
        if c.e.min.level == 0 && c.e.max.level == 0 {
            return;
        }
        for (side, pick) in [&mut c.e.min, &mut c.e.max].into_iter().enumerate() {
            if pick.level == 0 || !pick.found() {
                continue;
            }
            let idx = self.locate(pick, side);
            *pick = Pick { level: 0, idx, pos: self.pos(idx), len: 1, ..*pick };
            if prefetching {
                prefetch(&self.t, pick.pos);
            }
        }
    }

    /// Pipeline stage 3: emits the column's first, min, max and last samples, in sample order
    /// and without duplicates.
    #[inline]
    fn emit_column(&self, c: &Column, out: &mut Vec<[f64; 2]>) {
        let (first, last) = (c.a, c.b - 1);
        let mut points = [[0.0; 2]; 4];
        let p = self.pos(first);
        points[0] = [self.t[p], self.v[p]];
        let mut n = 1;
        if c.e.min.found() {
            let (lo, hi) = if c.e.max.idx < c.e.min.idx { (c.e.max, c.e.min) } else { (c.e.min, c.e.max) };
            let mut prev = first;
            for pick in [lo, hi] {
                if pick.idx != prev && pick.idx != last {
                    // The value is known from the cell: only the time is read.
                    points[n] = [self.t[pick.pos], pick.val];
                    n += 1;
                    prev = pick.idx;
                }
            }
        }
        if last != first {
            let p = self.pos(last);
            points[n] = [self.t[p], self.v[p]];
            n += 1;
        }
        out.extend_from_slice(&points[..n]);
    }

    /// Min and max (first occurrences) over the stored samples `[a, b)`, from the coarsest
    /// cells that fit entirely inside the range plus finer cells / raw samples at the ragged
    /// ends. `a` must not precede the oldest stored sample, so every cell used is fully stored.
    fn range_extremes(&self, a: u64, b: u64) -> Extremes {
        debug_assert!(self.oldest() <= a && a <= b && b <= self.next);
        let mut e = Extremes::NONE;
        // Right-hand ragged runs are collected bottom-up and applied top-down, so that all
        // runs are folded in index order (first occurrence wins on ties).
        let mut right = [(0usize, 0u64, 0u64); MAX_LEVELS + 1];
        let mut n_right = 0;
        let (mut l, mut r, mut level) = (a, b, 0usize);
        loop {
            if level < self.levels.len() {
                let l_up = (l + FANOUT - 1) & !(FANOUT - 1);
                let r_down = r & !(FANOUT - 1);
                if l_up < r_down {
                    if l < l_up {
                        self.fold_run(level, l, l_up, &mut e);
                    }
                    if r_down < r {
                        right[n_right] = (level, r_down, r);
                        n_right += 1;
                    }
                    l = l_up >> FANOUT_BITS;
                    r = r_down >> FANOUT_BITS;
                    level += 1;
                    continue;
                }
            }
            if l < r {
                self.fold_run(level, l, r, &mut e);
            }
            break;
        }
        for &(level, from, to) in right[..n_right].iter().rev() {
            self.fold_run(level, from, to, &mut e);
        }
        e
    }

    /// Folds raw samples (`level == 0`) or cells of `level` with indices `[from, to)` into `e`.
    #[inline]
    fn fold_run(&self, level: usize, from: u64, to: u64, e: &mut Extremes) {
        count_work(to - from);
        let n = (to - from) as usize;
        if level == 0 {
            let p = self.pos(from);
            let (s1, s2) = ring_slices(&self.v, p, n);
            e.add_run(values_min_max(s1), 0, from, p, s1.len());
            if !s2.is_empty() {
                e.add_run(values_min_max(s2), 0, from + s1.len() as u64, 0, s2.len());
            }
        } else {
            let lv = &self.levels[level - 1];
            let p = lv.pos((self.next - 1) >> lv.shift, from);
            let (s1, s2) = ring_slices(&lv.cells, p, n);
            e.add_run(cells_min_max(s1), level, from, p, s1.len());
            if !s2.is_empty() {
                e.add_run(cells_min_max(s2), level, from + s1.len() as u64, 0, s2.len());
            }
        }
    }

    /// Narrows a pick from its run to the first element of the run holding the extreme
    /// (`side` 0: min, 1: max), and takes its value from that element (the bits of a signed
    /// zero must be those of the sample plotted).
    #[inline]
    fn settle(&self, pick: &mut Pick, side: usize) {
        let run = pick.pos..pick.pos + pick.len;
        let (p, val) = if pick.level == 0 {
            let p = self.v[run].iter().position(|&x| x == pick.val).unwrap_or(0);
            (p, self.v[pick.pos + p])
        } else {
            let cells = &self.levels[pick.level - 1].cells;
            let p = cells[run].iter().position(|c| c[side] == pick.val && c[0] <= c[1]).unwrap_or(0);
            (p, cells[pick.pos + p][side])
        };
        *pick = Pick { val, idx: pick.idx + p as u64, pos: pick.pos + p, len: 1, ..*pick };
    }

    /// Raw index of the first sample of the settled `pick`'s cell whose value is `pick.val`
    /// (`side` 0: a min, 1: a max).
    fn locate(&self, pick: &Pick, side: usize) -> u64 {
        match pick.level {
            0 => pick.idx,
            1 => {
                // Level 1 stores no offsets: find the first of its 16 samples with the value.
                count_work(FANOUT);
                let first = pick.idx << FANOUT_BITS;
                let (s1, s2) = ring_slices(&self.v, self.pos(first), FANOUT as usize);
                let p = s1.iter().chain(s2).position(|&x| x == pick.val);
                debug_assert!(p.is_some(), "a level-1 extreme must be among its samples");
                first + p.unwrap_or(0) as u64
            }
            level => {
                count_work(1);
                let lv = &self.levels[level - 1];
                (pick.idx << lv.shift) + lv.at[pick.pos][side] as u64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    /// SplitMix64. Proptest picks the seed and the sizes; the bulk of a case (tens of thousands
    /// of samples) is expanded from the seed, which keeps generation fast.
    struct Rng(u64);

    impl Rng {
        fn u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn unit(&mut self) -> f64 {
            (self.u64() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn below(&mut self, n: u64) -> u64 {
            self.u64() % n
        }
        fn chance(&mut self, p: f64) -> bool {
            self.unit() < p
        }
        fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
            xs[self.below(xs.len() as u64) as usize]
        }
    }

    /// What was fed into a series.
    struct Signal {
        /// Every accepted sample, in push order.
        accepted: Vec<(f64, f64)>,
        /// Indices into `accepted` of the injected single-sample spikes.
        spikes: Vec<usize>,
        rejected: u64,
    }

    impl Signal {
        /// The samples the series must still hold, given its length.
        fn stored(&self, len: usize) -> &[(f64, f64)] {
            &self.accepted[self.accepted.len() - len..]
        }
    }

    /// Pushes `n` random samples into `s`: non-decreasing times with repeats and gaps (exact
    /// multiples of a step or jittered), random values of several kinds (walks, noise, small
    /// integers with many ties, zeros of both signs, NaN, ±inf), single-sample spikes of huge
    /// magnitude and both signs (sometimes all of one magnitude, so that they tie), and
    /// (sometimes) invalid pushes that must be rejected.
    fn feed(s: &mut Series, rng: &mut Rng, n: usize) -> Signal {
        let dt = rng.pick(&[1e-3, 1.0, 0.25, 7.0]);
        let quantized = rng.chance(0.5);
        let p_repeat = rng.pick(&[0.0, 0.05, 0.3, 0.9]);
        let p_gap = rng.pick(&[0.0, 0.001, 0.01]);
        let value_mode = rng.below(5);
        let p_nan = rng.pick(&[0.0, 0.0, 0.01, 0.3]);
        let p_inf = rng.pick(&[0.0, 0.0, 0.0, 1e-3]);
        let p_spike = rng.pick(&[1.0 / 5000.0, 1.0 / 500.0, 1.0 / 50.0]);
        let p_reject = rng.pick(&[0.0, 0.0, 0.01]);
        // Spikes of one fixed magnitude tie with each other (first-occurrence placement).
        let fixed_spikes = rng.chance(0.3);
        let start = (rng.below(2001) as f64 - 1000.0) * dt;
        let (mut ticks, mut t, mut walk) = (0u64, start, 0.0f64);
        let mut sig = Signal { accepted: Vec::with_capacity(n), spikes: Vec::new(), rejected: 0 };
        for i in 0..n {
            if rng.chance(p_reject) {
                let bad = match rng.below(4) {
                    0 => f64::NAN,
                    1 => f64::INFINITY,
                    2 => f64::NEG_INFINITY,
                    _ if i > 0 => t - dt * (1.0 + rng.unit()),
                    _ => f64::NAN,
                };
                assert!(!s.push(bad, 1.0), "push at t={bad} after t={t} must be rejected");
                sig.rejected += 1;
            }
            if i > 0 && !rng.chance(p_repeat) {
                let big = rng.chance(p_gap);
                if quantized {
                    ticks += if big { 10 + rng.below(1000) } else { 1 + rng.below(3) };
                    t = start + ticks as f64 * dt;
                } else {
                    t += dt * if big { 10.0 + 1000.0 * rng.unit() } else { 0.5 + rng.unit() };
                }
            }
            let mut v = match value_mode {
                0 => {
                    walk += rng.unit() - 0.5;
                    walk
                }
                1 => rng.unit() * 2.0 - 1.0,
                2 => rng.below(4) as f64,
                3 => {
                    if rng.chance(0.1) {
                        -0.0
                    } else {
                        0.0
                    }
                }
                _ => (i as f64 * 0.01).sin() * 100.0,
            };
            let sign = if rng.chance(0.5) { 1.0 } else { -1.0 };
            if rng.chance(p_nan) {
                v = f64::NAN;
            } else if rng.chance(p_inf) {
                v = sign * f64::INFINITY;
            } else if rng.chance(p_spike) {
                v = sign * if fixed_spikes { 1e9 } else { 10f64.powf(6.0 + 6.0 * rng.unit()) };
                sig.spikes.push(i);
            }
            assert!(s.push(t, v), "valid push at t={t} rejected");
            sig.accepted.push((t, v));
        }
        sig
    }

    fn gen_window(rng: &mut Rng, all: &[(f64, f64)], stored: &[(f64, f64)]) -> (f64, f64) {
        let (first, last) = match (all.first(), all.last()) {
            (Some(f), Some(l)) => (f.0, l.0),
            _ => (0.0, 1.0),
        };
        let span = (last - first).max(1e-3);
        let evicted = &all[..all.len() - stored.len()];
        let time_of = |rng: &mut Rng, xs: &[(f64, f64)], fallback: f64| {
            if xs.is_empty() { fallback } else { xs[rng.below(xs.len() as u64) as usize].0 }
        };
        match rng.below(9) {
            // Everything ever pushed (and a margin).
            0 => (first - span * 0.01 * rng.unit(), (last + span * 0.01 * rng.unit()).next_up()),
            // Exactly the stored history.
            1 => (stored.first().map_or(first, |x| x.0), last.next_up()),
            // Random zoom, from wider than the history to far fewer samples than pixels.
            2..=4 => {
                let w = span * 1.4 * 10f64.powf(-7.0 * rng.unit());
                let c = if rng.chance(0.5) {
                    time_of(rng, stored, last) + w * (rng.unit() - 0.5)
                } else {
                    first - 0.2 * span + 1.4 * span * rng.unit()
                };
                (c - w / 2.0, c + w / 2.0)
            }
            // Both ends exactly on sample times.
            5 => {
                let (a, b) = (time_of(rng, all, first), time_of(rng, all, last));
                (a.min(b), a.max(b))
            }
            // Starting among the evicted samples (or before everything), ending in the ring.
            6 | 7 => {
                let before = first - span * rng.unit();
                let a = time_of(rng, evicted, before);
                (a, time_of(rng, stored, last))
            }
            // Straddling the newest sample.
            _ => (time_of(rng, stored, last), last + span * rng.unit()),
        }
    }

    fn gen_width(rng: &mut Rng) -> usize {
        match rng.below(7) {
            0 => 1,
            1 => 2 + rng.below(3) as usize,
            2 => 1 + rng.below(64) as usize,
            3 => 4000,
            _ => 1 + rng.below(4000) as usize,
        }
    }

    fn same(p: [f64; 2], q: (f64, f64)) -> bool {
        p[0].to_bits() == q.0.to_bits() && p[1].to_bits() == q.1.to_bits()
    }

    /// Min and max of the non-NaN values.
    fn brute_min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
        values.filter(|v| !v.is_nan()).fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((if v < lo { v } else { lo }, if v > hi { v } else { hi })),
        })
    }

    /// Checks one view query against a brute-force scan of the stored samples. `spikes` are
    /// indices into `stored`.
    fn check_view(
        s: &Series,
        stored: &[(f64, f64)],
        spikes: &[usize],
        (t0, t1): (f64, f64),
        w: usize,
        out: &mut Vec<[f64; 2]>,
    ) -> Result<(), TestCaseError> {
        s.view(t0, t1, w, out);
        let valid = t0.partial_cmp(&t1) == Some(std::cmp::Ordering::Less) && (t1 - t0).is_finite();
        if stored.is_empty() || !valid {
            prop_assert!(out.is_empty());
            return Ok(());
        }
        prop_assert!(out.len() <= 4 * w + 2, "{} points for {} px", out.len(), w);
        prop_assert!(out.windows(2).all(|p| p[0][0] <= p[1][0]), "output not sorted by time");
        let start = stored.partition_point(|x| x.0 < t0);
        let end = stored.partition_point(|x| x.0 < t1);
        let mut pts = &out[..];
        if start > 0 {
            prop_assert!(!pts.is_empty() && same(pts[0], stored[start - 1]), "missing left edge point");
            pts = &pts[1..];
        }
        if end < stored.len() {
            prop_assert!(
                !pts.is_empty() && same(pts[pts.len() - 1], stored[end]),
                "missing right edge point"
            );
            pts = &pts[..pts.len() - 1];
        }
        let mut spikes = spikes.iter().copied().filter(|&k| k >= start && k < end).peekable();
        let (mut i, mut p, mut col) = (start, 0, 0);
        while i < end {
            while stored[i].0 >= column_edge(t0, t1, w, col + 1) {
                col += 1;
            }
            let (lo_edge, hi_edge) = (column_edge(t0, t1, w, col), column_edge(t0, t1, w, col + 1));
            let j = i + stored[i..end].partition_point(|x| x.0 < hi_edge);
            let column = &stored[i..j];
            let n_pts = pts[p..].partition_point(|q| q[0] < hi_edge);
            let group = &pts[p..p + n_pts];
            prop_assert!(!group.is_empty() && group.len() <= 4, "column {}: {} points", col, group.len());
            prop_assert!(group[0][0] >= lo_edge, "column {col}: point before the column");
            prop_assert!(same(group[0], column[0]), "column {col}: first point is not the first sample");
            prop_assert!(same(group[n_pts - 1], column[column.len() - 1]), "column {col}: wrong last point");
            for &q in group {
                prop_assert!(column.iter().any(|&x| same(q, x)), "column {col}: {q:?} is not a sample");
            }
            if column.len() == 1 {
                prop_assert_eq!(group.len(), 1, "one sample must give one point");
            }
            let want = brute_min_max(column.iter().map(|x| x.1));
            let got = brute_min_max(group.iter().map(|q| q[1]));
            prop_assert_eq!(
                got,
                want,
                "column {} of {} ({} samples): plotted vs true min/max",
                col,
                w,
                j - i
            );
            // The extremes are placed at their first occurrence in the column.
            if let Some((lo, hi)) = want {
                for m in [lo, hi] {
                    let plotted = group.iter().find(|q| q[1] == m).unwrap();
                    let first = column.iter().find(|x| x.1 == m).unwrap();
                    prop_assert!(same(*plotted, *first), "column {col}: {m} not at its first occurrence");
                }
            }
            // Injected spikes are never hidden: the plotted extent reaches them, and a spike
            // that is its column's unique extreme is plotted exactly where it occurred.
            while let Some(k) = spikes.next_if(|&k| k < j) {
                let (gmin, gmax) = got.unwrap_or((f64::NAN, f64::NAN));
                let v = stored[k].1;
                prop_assert!(if v > 0.0 { gmax >= v } else { gmin <= v }, "spike {:?} hidden", stored[k]);
                if column.iter().filter(|x| x.1 == v).count() == 1 && (v == gmax || v == gmin) {
                    prop_assert!(group.iter().any(|&q| same(q, stored[k])), "spike {:?} moved", stored[k]);
                }
            }
            p += n_pts;
            i = j;
            col += 1;
        }
        prop_assert_eq!(p, pts.len(), "points outside every non-empty column");
        Ok(())
    }

    fn capacity_for(rng: &mut Rng, n: usize, class: u32) -> usize {
        match class {
            0 => 1 + rng.below(40) as usize,
            1 => 1 + rng.below(n as u64 / 4 + 1) as usize,
            2 => 1 + rng.below(n as u64 + 1) as usize,
            3 => n.max(1),
            _ => n + 1 + rng.below(1000) as usize,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// The M4 view is spike-true at every zoom level, wrapped or not.
        #[test]
        fn view_matches_brute_force_at_every_zoom(
            seed in any::<u64>(),
            n in prop_oneof![1 => 0usize..64, 4 => 0usize..40_000],
            cap_class in 0u32..5,
        ) {
            let mut rng = Rng(seed);
            let mut s = Series::new(capacity_for(&mut rng, n, cap_class));
            let sig = feed(&mut s, &mut rng, n);
            prop_assert_eq!(s.len(), n.min(s.capacity()));
            prop_assert_eq!(s.rejected(), sig.rejected);
            let stored = sig.stored(s.len());
            let offset = n - stored.len();
            let spikes: Vec<usize> = sig.spikes.iter().filter(|&&k| k >= offset).map(|&k| k - offset).collect();
            let mut out = Vec::new();
            for _ in 0..8 {
                let window = gen_window(&mut rng, &sig.accepted, stored);
                let w = gen_width(&mut rng);
                check_view(&s, stored, &spikes, window, w, &mut out)?;
            }
        }

        /// min_max, nearest and samples_in against brute force.
        #[test]
        fn queries_match_brute_force(
            seed in any::<u64>(),
            n in prop_oneof![1 => 0usize..64, 4 => 0usize..20_000],
            cap_class in 0u32..5,
        ) {
            let mut rng = Rng(seed);
            let mut s = Series::new(capacity_for(&mut rng, n, cap_class));
            let sig = feed(&mut s, &mut rng, n);
            let stored = sig.stored(s.len());
            let all: Vec<(f64, f64)> = s.samples_in(f64::NEG_INFINITY, f64::INFINITY).collect();
            prop_assert!(all.len() == stored.len() && all.iter().zip(stored).all(|(a, b)| same([a.0, a.1], *b)));
            for _ in 0..40 {
                let (t0, t1) = gen_window(&mut rng, &sig.accepted, stored);
                let inside = stored.iter().filter(|x| t0 <= x.0 && x.0 < t1);
                prop_assert_eq!(s.min_max(t0, t1), brute_min_max(inside.clone().map(|x| x.1)), "window {:?}", (t0, t1));
                let got: Vec<(f64, f64)> = s.samples_in(t0, t1).collect();
                prop_assert!(got.len() == inside.clone().count() && got.iter().zip(inside).all(|(a, b)| same([a.0, a.1], *b)));

                let q = t0;
                let best = stored.iter().map(|x| (x.0 - q).abs()).fold(f64::INFINITY, f64::min);
                match s.nearest(q) {
                    None => prop_assert!(stored.is_empty()),
                    Some(got) => {
                        // Ties go to the newest of the equally near samples.
                        let k = stored.iter().rposition(|x| (x.0 - q).abs() == best).unwrap();
                        prop_assert!(same([got.0, got.1], stored[k]), "nearest({}) = {:?}, want {:?}", q, got, stored[k]);
                    }
                }
            }
        }
    }

    /// Brute-force check of every level cell that holds a stored sample: a cell fully stored
    /// must equal the min/max of its samples, the cell being filled at the head the min/max of
    /// the samples pushed into it so far.
    fn check_levels(s: &Series, accepted: &[(f64, f64)], only_head: bool) {
        let (lo, next) = (s.oldest(), s.next);
        if next == 0 {
            return;
        }
        for (k, lv) in s.levels.iter().enumerate() {
            let size = 1u64 << lv.shift;
            let newest = (next - 1) >> lv.shift;
            let oldest_full = lo.div_ceil(size);
            let from = if only_head { newest.max(oldest_full) } else { oldest_full };
            for j in from..=newest {
                let samples = &accepted[(j * size) as usize..((j + 1) * size).min(next) as usize];
                let want = brute_min_max(samples.iter().map(|x| x.1)).map_or(EMPTY_CELL, |(a, b)| [a, b]);
                let got = lv.cells[lv.pos(newest, j)];
                assert!(
                    got[0] == want[0] && got[1] == want[1],
                    "level {} cell {j} after {next} pushes: {got:?} != {want:?}",
                    k + 1
                );
                if !lv.at.is_empty() && want[0] <= want[1] {
                    let first = |m: f64| samples.iter().position(|x| x.1 == m).unwrap() as u32;
                    let at = lv.at[lv.pos(newest, j)];
                    assert_eq!(at, [first(want[0]), first(want[1])], "level {} cell {j} offsets", k + 1);
                }
            }
        }
    }

    #[test]
    fn levels_are_exact_after_every_push() {
        let mut rng = Rng(7);
        for cap in [1, 15, 16, 17, 31, 255, 256, 257, 300, 4097] {
            let mut s = Series::new(cap);
            let mut accepted = Vec::new();
            for i in 0..(3 * cap + 600) {
                let v = match rng.below(20) {
                    0 => f64::NAN,
                    1 => f64::INFINITY,
                    2 => f64::NEG_INFINITY,
                    3 => 1e12,
                    _ => rng.below(8) as f64 - (i % 97) as f64 * 0.1,
                };
                let t = i as f64 * 0.5;
                assert!(s.push(t, v));
                accepted.push((t, v));
                check_levels(&s, &accepted, cap > 300 && i % 101 != 0);
            }
            check_levels(&s, &accepted, false);
        }
    }

    #[test]
    fn wrap_keeps_exactly_the_newest_capacity_samples() {
        for (cap, n) in [(1usize, 5usize), (16, 16), (16, 17), (1000, 2500), (4096, 4096 * 3 + 5)] {
            let mut s = Series::new(cap);
            for i in 0..n {
                assert!(s.push(i as f64, -(i as f64)));
            }
            assert_eq!(s.len(), cap.min(n));
            assert_eq!(s.total_pushed(), n as u64);
            let kept: Vec<(f64, f64)> = s.samples_in(f64::NEG_INFINITY, f64::INFINITY).collect();
            let want: Vec<(f64, f64)> = (n - cap.min(n)..n).map(|i| (i as f64, -(i as f64))).collect();
            assert_eq!(kept, want);
            assert_eq!(s.first_t(), Some((n - cap.min(n)) as f64));
            assert_eq!(s.last(), Some(((n - 1) as f64, -((n - 1) as f64))));
            assert_eq!(
                s.min_max(f64::NEG_INFINITY, f64::INFINITY),
                Some((want[want.len() - 1].1, want[0].1))
            );
        }
    }

    #[test]
    fn partly_evicted_cells_are_never_used() {
        // Capacity 20: level-1 cell 1 covers samples 16..32; after 40 pushes samples 20..40
        // are stored, so that cell still remembers the evicted spike at index 17.
        let mut s = Series::new(20);
        for i in 0..40 {
            let v = match i {
                17 => 1e9,
                18 => -1e9,
                _ => i as f64,
            };
            s.push(i as f64, v);
        }
        assert_eq!(s.min_max(0.0, 100.0), Some((20.0, 39.0)));
        assert_eq!(s.min_max(20.0, 32.0), Some((20.0, 31.0)));
        let mut out = Vec::new();
        s.view(0.0, 40.0, 1, &mut out);
        assert_eq!(out, vec![[20.0, 20.0], [39.0, 39.0]]);
    }

    #[test]
    fn tied_extremes_are_placed_at_their_first_occurrence() {
        // The column [0, 300) is answered from level-2 cell 0, level-1 cells 16..18 (samples
        // 256..288) and raw samples 288..300; the maximum 5 occurs in both right-hand runs.
        let mut s = Series::new(1000);
        for i in 0..300 {
            let v = if i == 270 || i == 295 { 5.0 } else { 0.0 };
            s.push(i as f64, v);
        }
        let mut out = Vec::new();
        s.view(0.0, 300.0, 1, &mut out);
        assert_eq!(out, vec![[0.0, 0.0], [270.0, 5.0], [299.0, 0.0]]);
    }

    #[test]
    fn rejected_pushes_are_counted_and_do_not_corrupt_levels() {
        let mut a = Series::new(1000);
        let mut b = Series::new(1000);
        let mut rejected = 0;
        for i in 0..5000u64 {
            let t = (i / 3) as f64; // repeated timestamps are fine
            let v = ((i * 7919) % 1013) as f64 - 500.0;
            assert!(a.push(t, v));
            assert!(b.push(t, v));
            if i % 7 == 0 {
                for bad in [t - 0.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                    assert!(!a.push(bad, 1e30));
                    rejected += 1;
                }
            }
        }
        assert_eq!(a.rejected(), rejected);
        assert_eq!(b.rejected(), 0);
        assert_eq!(a.total_pushed(), b.total_pushed());
        assert_eq!(a.len(), b.len());
        let bits = |s: &Series| -> Vec<u64> {
            let raw = s.t.iter().chain(&s.v).map(|x| x.to_bits());
            let cells = s.levels.iter().flat_map(|l| l.cells.iter().flatten().map(|x| x.to_bits()));
            raw.chain(cells).collect()
        };
        assert!(bits(&a) == bits(&b), "rejected pushes changed the stored data or levels");
        let (mut va, mut vb) = (Vec::new(), Vec::new());
        for (t0, t1, w) in [(0.0, 2000.0, 800), (1500.0, 1600.0, 37), (1200.0, 1210.0, 4000)] {
            a.view(t0, t1, w, &mut va);
            b.view(t0, t1, w, &mut vb);
            assert_eq!(va, vb);
            assert!(va.iter().all(|p| p[1] != 1e30));
        }
        assert_eq!(a.min_max(0.0, 1e9), b.min_max(0.0, 1e9));
    }

    #[test]
    fn memory_is_16_bytes_per_sample_plus_levels() {
        for cap in [1usize, 15, 16, 1000, 65_536, 1_000_000, 3_000_001] {
            let s = Series::new(cap);
            let raw = 16 * cap;
            let m = s.memory_bytes();
            assert!(m >= raw, "cap {cap}: {m} bytes");
            // Levels: 16 B per 16 samples (level 1) + 24 B per 16^k samples (k ≥ 2) ≈ 1.1 B per
            // sample, i.e. 1/14.5 of the raw 16 B.
            let bound = raw + raw * 11 / 160 + 1024;
            assert!(m <= bound, "cap {cap}: {m} bytes > {bound}");
        }
    }

    /// The view touches O(width · log n) elements — never the samples of a dense window.
    #[test]
    fn view_work_does_not_grow_with_samples_per_pixel() {
        let work = |f: &mut dyn FnMut()| {
            WORK.with(|w| w.set(0));
            f();
            WORK.with(|w| w.get())
        };
        let mut out = Vec::new();
        let mut per_px = Vec::new();
        for log16 in [3u32, 5] {
            let n = 1usize << (4 * log16);
            let mut s = Series::new(n);
            for i in 0..n {
                s.push(i as f64 * 1e-3, ((i * 2_654_435_761) % 1000) as f64);
            }
            let t_end = n as f64 * 1e-3;
            let w = 200;
            let whole = work(&mut || s.view(0.0, t_end, w, &mut out));
            assert!(out.len() > 3 * w);
            // 15 cells per side per level + 16 per descent step per extreme + searches.
            let bound = (w as u64) * (64 * log16 as u64 + 64);
            assert!(whole < bound, "n={n}: whole-history view touched {whole} > {bound}");
            if n > 100_000 {
                assert!(whole < n as u64 / 4, "n={n}: whole-history view touched {whole} elements");
            }
            let mm = work(&mut || {
                s.min_max(0.0, t_end);
            });
            assert!(mm < 64 * log16 as u64 + 64, "min_max touched {mm}");
            per_px.push(whole);
        }
        // 256× more samples per pixel: the work grows with the number of levels, not 256×.
        assert!(per_px[1] < 8 * per_px[0], "{per_px:?}");
    }

    #[test]
    fn nan_and_inf_values() {
        let mut s = Series::new(64);
        for (i, v) in [1.0, f64::NAN, 3.0, f64::NAN].into_iter().enumerate() {
            assert!(s.push(i as f64, v), "NaN values are stored");
        }
        assert_eq!(s.len(), 4);
        assert_eq!(s.min_max(0.0, 10.0), Some((1.0, 3.0)));
        assert_eq!(s.min_max(1.0, 2.0), None, "all-NaN window has no min/max");
        assert!(s.last().unwrap().1.is_nan());
        let mut out = Vec::new();
        s.view(0.0, 4.0, 1, &mut out);
        assert_eq!(out.len(), 3); // first, max (3.0), last (NaN)
        assert!(out[0] == [0.0, 1.0] && out[1] == [2.0, 3.0] && out[2][1].is_nan());

        let mut s = Series::new(1000);
        for i in 0..500 {
            let v = match i {
                100 => f64::INFINITY,
                300 => f64::NEG_INFINITY,
                _ => 0.5,
            };
            s.push(i as f64, v);
        }
        assert_eq!(s.min_max(0.0, 500.0), Some((f64::NEG_INFINITY, f64::INFINITY)));
        assert_eq!(s.min_max(0.0, 200.0), Some((0.5, f64::INFINITY)));
        s.view(0.0, 500.0, 1, &mut out);
        assert_eq!(out, vec![[0.0, 0.5], [100.0, f64::INFINITY], [300.0, f64::NEG_INFINITY], [499.0, 0.5]]);
        let mut s = Series::new(100);
        for i in 0..50 {
            s.push(i as f64, if i % 2 == 0 { f64::INFINITY } else { f64::NAN });
        }
        assert_eq!(s.min_max(0.0, 50.0), Some((f64::INFINITY, f64::INFINITY)));
        // Short columns (scanned directly) whose only values are infinite.
        for inf in [f64::INFINITY, f64::NEG_INFINITY] {
            let mut s = Series::new(100);
            for i in 0..5 {
                s.push(i as f64, if i % 2 == 1 { inf } else { f64::NAN });
            }
            s.view(0.0, 5.0, 1, &mut out);
            let bits: Vec<[u64; 2]> = out.iter().map(|p| [p[0].to_bits(), p[1].to_bits()]).collect();
            let want = [[0.0, f64::NAN], [1.0, inf], [4.0, f64::NAN]];
            assert_eq!(bits, want.map(|p| [p[0].to_bits(), p[1].to_bits()]));
        }
    }

    #[test]
    fn basics_and_clear() {
        let s = Series::new(0);
        assert_eq!(s.capacity(), 1);
        assert!(s.is_empty() && s.first_t().is_none() && s.last().is_none() && s.nearest(0.0).is_none());
        let mut out = vec![[1.0, 1.0]];
        s.view(0.0, 1.0, 100, &mut out);
        assert!(out.is_empty());

        let mut s = Series::new(100);
        for i in 0..150 {
            s.push(i as f64, i as f64);
        }
        assert!(!s.push(10.0, 0.0));
        assert!(s.push(149.0, 1.0), "equal times are accepted");
        assert_eq!(s.nearest(60.4), Some((60.0, 60.0)));
        assert_eq!(s.nearest(60.5), Some((61.0, 61.0)), "ties go to the later sample");
        assert_eq!(s.nearest(-1e9), Some((51.0, 51.0)));
        assert_eq!(s.nearest(f64::INFINITY), Some((149.0, 1.0)));
        s.view(60.0, 61.0, 10, &mut out);
        assert_eq!(out, vec![[59.0, 59.0], [60.0, 60.0], [61.0, 61.0]]);
        s.view(60.0, 60.0, 10, &mut out);
        assert!(out.is_empty(), "empty window");
        s.view(0.0, f64::INFINITY, 10, &mut out);
        assert!(out.is_empty(), "infinite window");

        s.clear();
        assert_eq!(s.len(), 0);
        assert!(s.is_empty() && s.min_max(f64::NEG_INFINITY, f64::INFINITY).is_none());
        assert_eq!((s.total_pushed(), s.rejected()), (151, 1), "lifetime counters survive clear");
        assert!(s.push(-5.0, 2.0), "any time is accepted after clear");
        assert!(s.push(-4.0, 1.0));
        assert_eq!(s.samples_in(-10.0, 10.0).collect::<Vec<_>>(), vec![(-5.0, 2.0), (-4.0, 1.0)]);
        assert_eq!(s.min_max(-10.0, 10.0), Some((1.0, 2.0)));
        assert!(s.memory_bytes() >= 1600);
    }
}
