//! Per-signal sample store behind the live plots.
//!
//! A [`Series`] keeps the newest `capacity` raw samples of one signal in a fixed-capacity ring
//! (times and values as two `f64` arrays, structure-of-arrays) plus a hierarchy of min/max
//! *levels*. Level `k` (k ≥ 1) holds one `[min, max]` cell per 2^s_k consecutive samples: 16
//! at level 1, 256 at level 2, then 4 times more per level (1024, 4096, …, at most 2^32).
//!
//! From level 2 up (the *detail levels*) a cell also carries what lets it stand for its
//! samples without a single read of the raw ring: its first and last sample `[t, v]`, the times
//! and offsets (`u32`) of the samples where its min and max first occur (56 B together), and
//! the sums `Σv`, `Σv²` and count of its non-NaN values (24 B). Level 1 carries none of it:
//! that would cost 5 B more per sample. Above level 2 the fan-out is 4, not 16, so that a
//! grouped view (below) reads 1 to 4 cells per pixel column whatever the zoom.
//!
//! Memory: 16 bytes per sample of capacity for the raw ring, plus 1 B per sample for level 1
//! (16 B per 16 samples) and ≈0.5 B for the detail levels (96 B per 256·4^m samples, summed
//! over m): ≈17.5 bytes per sample. Levels are updated in O(1) amortised time per push (a push
//! climbs only while it changes a cell's min or max or starts a cell; completing a cell, once
//! per cell, records its last sample and passes its sums to its parent) and nothing is
//! allocated after [`Series::new`].
//!
//! # Indices
//!
//! Every accepted sample gets an absolute index from a monotonic counter (reset only by
//! [`Series::clear`]). Cell `j` of a level with cells of 2^s samples covers the absolute
//! indices `[j·2^s, (j+1)·2^s)` whatever the ring position, so the levels stay valid while the
//! ring wraps. Each level is itself a ring, long enough (`(capacity-1)/2^s + 1` cells) to hold
//! every cell whose samples are all still stored, plus the cell being filled at the head (whose
//! min, max, extremes' positions and first sample are exact after every push; its last sample
//! and sums are written when it completes). A query only ever uses complete cells that lie
//! entirely inside the queried index range, and query ranges never start before the oldest
//! stored sample, so a cell whose older samples were already overwritten is never consulted:
//! the evicted-overlap part of a range is always covered by raw samples or finer cells.
//!
//! Time → index searches (window edges, [`Series::nearest`]) narrow the range on the detail
//! levels' first times, coarse to fine, before searching the raw times, so that on a long
//! history they touch a few cache lines per level instead of missing the cache all the way
//! down the raw ring.
//!
//! # Spike-true view (M4)
//!
//! [`Series::view`] partitions the samples of a time window into consecutive *groups*, at most
//! one per pixel column, and emits for each its first, min, max and last sample (each an
//! actual sample, in sample order, without duplicates; extremes at their first occurrence),
//! plus the nearest sample outside each end of the window. How groups are cut depends on the
//! mean number of samples per column, `per_col` = (samples in the window) / width:
//!
//! * **Exact columns** (`per_col` < 256, or the window holds no whole cell of the level below):
//!   each group is exactly the samples of one pixel column. Column boundaries are found by a
//!   galloping search from the previous boundary (the ring is time-sorted). A short column is
//!   scanned; otherwise its min/max come from the coarsest cells that fit inside it plus finer
//!   cells and raw samples at its ragged ends, and the sample where an extreme occurs is read
//!   from the winning cell's offset (or, for a level-1 cell, found among its 16 samples). When
//!   the window's data is much larger than the caches, columns are processed in a short
//!   software pipeline with prefetching. Cost O(width · log n).
//! * **Whole-cell groups** (`per_col` ≥ 256): exact column boundaries would force ragged ends,
//!   i.e. finer cells and raw samples scattered through the whole history, at every column.
//!   Instead the query picks the coarsest detail level L whose cells hold S ≤ `per_col`
//!   samples (so a cell spans about a column or less, and a column 1 to 4 cells), assigns each
//!   whole level-L cell to the column of its first sample, and makes the group of column `c`
//!   the run of cells that start in `c`. The run's end is found by searching the cells' first
//!   times (predicted from the cells' mean duration, so usually two probes); its first and last
//!   samples come from its first and last cell, its min and max (values, times, offsets) from
//!   the cells' extremes, read in order from the level's own arrays. Only two kinds of samples
//!   are resolved like exact columns, through finer levels and raw samples, and cut into exact
//!   column pieces that join the group of their column: the window's ragged ends (before its
//!   first and after its last whole cell: once per query, not per column), and *wide* cells,
//!   whose last sample lies at or beyond the end of the next column (a gap or a burst of
//!   irregular rate) and which would otherwise stretch a group over three columns or more.
//!   Cost O(width + log n), independent of the history length and of how many samples the
//!   window holds (the tests count the elements a query touches).
//!
//!   **Group span.** The group of column `c` holds samples with `t` in
//!   `[edge(c), edge(c + 2))`, i.e. it lies within two adjacent pixel columns, and fewer than
//!   S ≤ `per_col` of its samples lie in column `c + 1` (from its last cell; the group of
//!   column `c + 1`, if any, starts right after them). So its points are at most two columns
//!   apart, and a column may also be represented by the previous column's group alone.
//!
//! Either way every sample belongs to exactly one group, whose min and max are plotted where
//! they occur: a one-sample spike is never hidden, and never smeared over more than two
//! columns. At most `4 · width + 2` points.
//!
//! # Window statistics
//!
//! [`Series::stats`] (count, min, max, mean, RMS of a time window) takes min and max like
//! [`Series::min_max`] and the sums from the coarsest detail-level cells inside the window plus
//! at most 255 raw samples at each end: O(log n), whatever the window's size. The sums are
//! accumulated cell by cell, a tree, so their rounding error stays far below that of a
//! sequential sum.
//!
//! # Non-finite values
//!
//! * A sample with a non-finite time, or a time earlier than the newest stored one, is rejected
//!   and counted ([`Series::rejected`]).
//! * A `NaN` value is stored (it is returned by [`Series::samples_in`], [`Series::nearest`],
//!   [`Series::last`], and can be the first/last point of a view group, which makes the plot
//!   break the line there) but is ignored by every min/max and sum: levels,
//!   [`Series::min_max`], [`Series::stats`] and the min/max points of [`Series::view`]. A
//!   window whose values are all NaN has no min/max and no statistics (`None`).
//! * `±inf` values are stored and take part in min/max as ordinary ordered values: an
//!   overflowing or saturated reading is exactly the kind of spike the plot must not hide.
//!   Consequently [`Series::min_max`] can return infinite bounds; y auto-scaling must clamp.
//!   In [`Series::stats`] they make the mean `±inf` (NaN if both signs occur) and the RMS
//!   `+inf`, as IEEE arithmetic on the sums gives.

use std::fmt;

/// log2 of the fan-out from the raw samples to level 1 and from level 1 to level 2.
const FANOUT_BITS: u32 = 4;
/// Raw samples folded into one cell of level 1 (and level-1 cells into one of level 2).
const FANOUT: u64 = 1 << FANOUT_BITS;
/// log2 of the fan-out between the levels from [`DETAIL_LEVEL`] up. A grouped view reads
/// between one and 4 cells per group (16 would make the cost swing 16-fold with the zoom).
const DETAIL_FANOUT_BITS: u32 = 2;
/// `[min, max]` of a cell that holds no non-NaN value yet.
const EMPTY_CELL: [f64; 2] = [f64::INFINITY, f64::NEG_INFINITY];
/// Upper bound on the number of levels: cells of at most 2^32 samples, so that offsets within a
/// cell fit a `u32` (16, 256, then ×4 up to 2^32: 14 levels). Only a capacity beyond 4.3e9
/// samples would want more.
const MAX_LEVELS: usize = 14;
/// The finest level whose cells carry [`Level::detail`] and [`Level::sums`] (the first level
/// that can afford them: on level 1 they would cost 5 B per sample).
const DETAIL_LEVEL: usize = 2;
/// Windows with fewer samples than this (16 B each) are assumed to be in cache: their view
/// query skips the prefetching pipeline. (Lower in tests, so that both paths are exercised.)
const PIPELINE_MIN_SAMPLES: u64 = if cfg!(test) { 2000 } else { 1 << 16 };
/// How many columns ahead the view pipeline prefetches a boundary.
const PREFETCH_COLUMNS: u64 = 1;
/// Columns with at most this many samples are scanned directly.
const SHORT_COLUMN: u64 = 32;
/// `Pick::level` of "nothing found".
const NO_LEVEL: usize = usize::MAX;
/// `Group::col` of "no group started yet".
const NO_COLUMN: usize = usize::MAX;

#[cfg(test)]
thread_local! {
    /// Elements (samples, cells, search probes) touched by queries on this thread — lets the
    /// tests prove that a view never scans the samples of a densely populated window.
    static WORK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// The groups emitted by the last view on this thread, so that the tests can check each one
    /// against its own samples.
    static GROUPS: std::cell::RefCell<Vec<GroupRecord>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[inline(always)]
fn count_work(_n: u64) {
    #[cfg(test)]
    WORK.with(|w| w.set(w.get() + _n));
}

/// One emitted group of a view: samples `[a, b)` (absolute indices), the number of points it
/// produced, and the level whose cells it was assembled from (0: an exact pixel column).
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
struct GroupRecord {
    a: u64,
    b: u64,
    points: usize,
    level: usize,
}

#[inline(always)]
fn record_group(_a: u64, _b: u64, _points: usize, _level: usize) {
    #[cfg(test)]
    GROUPS.with(|g| g.borrow_mut().push(GroupRecord { a: _a, b: _b, points: _points, level: _level }));
}

/// What a view group needs from a level-≥2 cell besides its min and max (56 B, apart from the
/// `[min, max]` cells that a group scans): a group reads it only for its first and last cells
/// and the cells of its extremes.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Detail {
    /// `[t, v]` of the first sample. `t` doubles as the search key that maps a time to a cell
    /// without touching the raw times.
    first: [f64; 2],
    /// `[t, v]` of the last sample, written when the cell is complete.
    last: [f64; 2],
    /// Times of the first samples holding the min and the max, so that a view plots an
    /// extreme without reading the raw ring. Exact for every cell, the head cell included.
    t: [f64; 2],
    /// Offsets of those samples within the cell: they order samples of equal times.
    at: [u32; 2],
}

/// One min/max level: a ring of `[min, max]` cells, cell `j` covering absolute sample indices
/// `[j << shift, (j + 1) << shift)`. A cell without any non-NaN sample is [`EMPTY_CELL`]
/// (so `min <= max` exactly when the cell has a value).
///
/// From [`DETAIL_LEVEL`] up, each cell also carries everything a view group or a window
/// statistic needs from it, so that whole cells stand for their samples without a single read
/// of the raw ring (which would be a cache miss per cell on a long history).
#[derive(Clone)]
struct Level {
    shift: u32,
    cells: Vec<[f64; 2]>,
    /// Levels ≥ 2 only (empty for level 1), like `sums`.
    detail: Vec<Detail>,
    /// `[Σv, Σv², n]` over the cell's non-NaN values (levels ≥ 2), valid for complete cells
    /// only: a cell receives the sums of its children as they complete (a level-2 cell sums its
    /// samples when it completes), which keeps a push O(1) amortised.
    sums: Vec<[f64; 3]>,
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

/// The pixel columns of a view window: `width` equal slices of `[t0, t1)`.
#[derive(Clone, Copy)]
struct Columns {
    t0: f64,
    t1: f64,
    width: usize,
}

impl Columns {
    /// Left edge of column `col` (see [`column_edge`]).
    #[inline]
    fn edge(&self, col: usize) -> f64 {
        column_edge(self.t0, self.t1, self.width, col)
    }

    /// The column holding time `t`, which must lie in `[t0, t1)`: estimated arithmetically,
    /// then corrected against [`Self::edge`] so that it agrees exactly with the exact path.
    #[inline]
    fn of(&self, t: f64) -> usize {
        let x = (t - self.t0) / (self.t1 - self.t0) * self.width as f64;
        // `as` saturates: negative or NaN estimates give column 0.
        let mut c = (x as usize).min(self.width - 1);
        while c > 0 && t < self.edge(c) {
            c -= 1;
        }
        while c + 1 < self.width && t >= self.edge(c + 1) {
            c += 1;
        }
        c
    }
}

/// A stored sample picked for a view: absolute index (orders and deduplicates points of equal
/// times) and `[t, v]`.
#[derive(Clone, Copy)]
struct Point {
    idx: u64,
    t: f64,
    v: f64,
}

/// A run of consecutive samples of a view window: its first and last sample and, if it holds a
/// non-NaN value (`found`), the first occurrences of its min and max.
#[derive(Clone, Copy)]
struct Piece {
    first: Point,
    last: Point,
    min: Point,
    max: Point,
    found: bool,
}

/// The group of a grouped view being assembled: the pieces, in sample order, whose first
/// sample lies in column `col`.
struct Group {
    col: usize,
    p: Piece,
}

impl Group {
    const NONE: Group = {
        let nowhere = Point { idx: 0, t: 0.0, v: 0.0 };
        Group {
            col: NO_COLUMN,
            p: Piece { first: nowhere, last: nowhere, min: nowhere, max: nowhere, found: false },
        }
    };

    /// Appends the piece `q`, whose first sample lies in column `col`: joins the group if it is
    /// that column's, otherwise emits the group and starts the next one. Pieces arrive in
    /// sample order, so only a strict improvement replaces an extreme (first occurrence wins).
    #[inline(always)]
    fn add(&mut self, col: usize, q: &Piece, level: usize, out: &mut Batch<'_>) {
        if col != self.col {
            self.flush(level, out);
        }
        let p = &mut self.p;
        if col != self.col {
            // Field by field: a whole-struct assignment compiles to a `memcpy` call.
            (self.col, p.first, p.last, p.min, p.max, p.found) =
                (col, q.first, q.last, q.min, q.max, q.found);
            return;
        }
        p.last = q.last;
        if q.found {
            if !p.found || q.min.v < p.min.v {
                p.min = q.min;
            }
            if !p.found || q.max.v > p.max.v {
                p.max = q.max;
            }
            p.found = true;
        }
    }

    /// Emits the group (if any) as its first, min, max and last points.
    #[inline(always)]
    fn flush(&self, level: usize, out: &mut Batch<'_>) {
        if self.col != NO_COLUMN {
            emit_piece(&self.p, level, out);
        }
    }
}

/// Writes a group's first, min, max and last samples in sample order, each sample once.
/// Branch-free: where the extremes fall is data, and mispredicted branches per group would
/// cost more than the stores.
#[inline(always)]
fn emit_piece(p: &Piece, _level: usize, out: &mut Batch<'_>) {
    let (mut lo, mut hi) = if p.max.idx < p.min.idx { (&p.max, &p.min) } else { (&p.min, &p.max) };
    if !p.found {
        (lo, hi) = (&p.first, &p.first);
    }
    // first <= lo <= hi <= last by index; a point is written only if its sample differs from
    // those before it (and an extreme only if it is not the last sample).
    let keep_lo = lo.idx != p.first.idx && lo.idx != p.last.idx;
    let keep_hi = hi.idx != lo.idx && hi.idx != p.last.idx;
    let keep_last = p.last.idx != p.first.idx;
    let n = out.reserve4();
    let buf = &mut out.buf[n..n + 4];
    let mut k = 0;
    for (q, keep) in [(&p.first, true), (lo, keep_lo), (hi, keep_hi), (&p.last, keep_last)] {
        buf[k] = [q.t, q.v];
        k += keep as usize;
    }
    out.n += k;
    record_group(p.first.idx, p.last.idx + 1, k, _level);
}

/// Points per [`Batch`].
const BATCH: usize = 256;

/// The output of a view, batched: a group's points are written into a local buffer (all four
/// slots, only the kept ones counted), and the buffer goes to the caller's vector a few hundred
/// points at a time. Appending each group's variable number of points to the vector directly
/// costs a `memcpy` call or a capacity check per point.
struct Batch<'a> {
    buf: [[f64; 2]; BATCH],
    n: usize,
    out: &'a mut Vec<[f64; 2]>,
}

impl<'a> Batch<'a> {
    fn new(out: &'a mut Vec<[f64; 2]>) -> Self {
        Batch { buf: [[0.0; 2]; BATCH], n: 0, out }
    }

    /// Makes room for four points after the `n` buffered ones, and returns `n`.
    #[inline(always)]
    fn reserve4(&mut self) -> usize {
        if self.n > BATCH - 4 {
            self.flush();
        }
        self.n
    }

    /// Moves the buffered points to the output vector.
    fn flush(&mut self) {
        self.out.extend_from_slice(&self.buf[..self.n]);
        self.n = 0;
    }
}

/// Statistics of the samples in a time window, see [`Series::stats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    /// Samples with a non-NaN value in the window (NaN values are ignored by every field).
    pub count: u64,
    /// Smallest value (`-inf` if the window holds one).
    pub min: f64,
    /// Largest value (`+inf` if the window holds one).
    pub max: f64,
    /// Arithmetic mean: `+inf` / `-inf` if the window holds infinities of one sign only, NaN if
    /// it holds both.
    pub mean: f64,
    /// Root mean square: `+inf` if the window holds an infinity (or values beyond ~1e154, whose
    /// squares overflow).
    pub rms: f64,
}

impl WindowStats {
    /// `max - min`: `+inf` if the window holds an infinity, NaN if all its values are one and
    /// the same infinity.
    pub fn peak_to_peak(&self) -> f64 {
        self.max - self.min
    }
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
    /// Level `k` (k ≥ 1) is `levels[k - 1]`; only levels whose cells hold at most `capacity`
    /// samples exist.
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

/// First `k` in `[lo, hi)` for which `below(k)` is false, or `hi` (`below` must hold on a
/// prefix of the range only); galloping outwards from `guess`, so O(log |answer - guess|)
/// probes — two when the guess is right.
#[inline]
fn gallop(lo: u64, hi: u64, guess: u64, below: impl Fn(u64) -> bool) -> u64 {
    let g = guess.clamp(lo, hi);
    // Bracket the answer in [l, r], then bisect.
    let (mut l, mut r);
    let mut step = 1;
    if g < hi && below(g) {
        l = g + 1;
        loop {
            count_work(1);
            let probe = g + step;
            if probe >= hi {
                r = hi;
                break;
            }
            if !below(probe) {
                r = probe;
                break;
            }
            l = probe + 1;
            step *= 2;
        }
    } else {
        r = g;
        loop {
            count_work(1);
            if r == lo {
                l = lo;
                break;
            }
            let probe = g.saturating_sub(step).max(lo);
            if below(probe) {
                l = probe + 1;
                break;
            }
            r = probe;
            step *= 2;
        }
    }
    while l < r {
        count_work(1);
        let m = l + (r - l) / 2;
        if below(m) {
            l = m + 1;
        } else {
            r = m;
        }
    }
    l
}

/// Ring positions of the cells of one level from cell `from` on (up to the head cell).
#[derive(Clone, Copy)]
struct CellPos {
    from: u64,
    base: usize,
    len: usize,
}

impl CellPos {
    fn new(lv: &Level, newest_cell: u64, from: u64) -> Self {
        CellPos { from, base: lv.pos(newest_cell, from), len: lv.cells.len() }
    }

    #[inline(always)]
    fn of(&self, cell: u64) -> usize {
        debug_assert!(cell >= self.from && ((cell - self.from) as usize) < self.len);
        let p = self.base + (cell - self.from) as usize;
        if p >= self.len { p - self.len } else { p }
    }
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
            // 2^shift samples that start at or after the oldest of `cap` consecutive stored
            // indices number at most (cap-1)/2^shift + 1. (A cell whose oldest samples were
            // overwritten may itself be overwritten; it is never used.)
            let cells = ((cap as u64 - 1) >> shift) as usize + 1;
            let detail = if levels.len() + 1 >= DETAIL_LEVEL { cells } else { 0 };
            levels.push(Level {
                shift,
                cells: vec![EMPTY_CELL; cells],
                detail: vec![Detail::default(); detail],
                sums: vec![[0.0; 3]; detail],
                head: 0,
            });
            shift += if levels.len() < DETAIL_LEVEL { FANOUT_BITS } else { DETAIL_FANOUT_BITS };
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
        let nan = value.is_nan();
        let fresh = if nan { EMPTY_CELL } else { [value, value] };
        let (mut climb_min, mut climb_max) = (!nan, !nan);
        for level in &mut self.levels {
            let offset = i & ((1u64 << level.shift) - 1);
            if offset == 0 {
                if i != 0 {
                    level.head = if level.head + 1 == level.cells.len() { 0 } else { level.head + 1 };
                }
                let h = level.head;
                level.cells[h] = fresh;
                if let Some(d) = level.detail.get_mut(h) {
                    *d = Detail { first: [t_s, value], last: d.last, t: [t_s; 2], at: [0; 2] };
                    level.sums[h] = [0.0; 3];
                }
                continue;
            }
            if !(climb_min || climb_max) {
                break;
            }
            let h = level.head;
            let cell = &mut level.cells[h];
            // An empty cell takes any non-NaN value, even one equal to its placeholder bound
            // (+inf as min, -inf as max), so that the extreme's position is recorded.
            let empty = cell[0] > cell[1];
            let (new_min, new_max) =
                (climb_min && (value < cell[0] || empty), climb_max && (value > cell[1] || empty));
            if new_min {
                cell[0] = value;
            }
            if new_max {
                cell[1] = value;
            }
            if let Some(d) = level.detail.get_mut(h) {
                if new_min {
                    (d.t[0], d.at[0]) = (t_s, offset as u32);
                }
                if new_max {
                    (d.t[1], d.at[1]) = (t_s, offset as u32);
                }
            }
            climb_min = new_min;
            climb_max = new_max;
        }
        // The levels whose cell size divides i + 1 have a cell that this sample completes.
        let done = (i + 1).trailing_zeros();
        if done >= FANOUT_BITS * DETAIL_LEVEL as u32 {
            self.complete_cells(done, t_s, value);
        }
        true
    }

    /// Seals the head cells of the levels ≥ [`DETAIL_LEVEL`] with cells of at most 2^`bits`
    /// samples, completed by the sample `(t, v)`: records it as their last sample, and passes
    /// their sums up to their parents. A level-2 cell sums its samples, all still in the ring
    /// (and in cache): once per cell, that is cheaper than updating the sums on every push.
    /// (Called once per 256 pushes: kept out of line, so that it does not weigh on `push`.)
    #[inline(never)]
    fn complete_cells(&mut self, bits: u32, t: f64, v: f64) {
        let Some(lv) = self.levels.get(DETAIL_LEVEL - 1) else {
            return;
        };
        let sums = self.raw_sums(self.next - (1 << lv.shift), self.next);
        let lv = &mut self.levels[DETAIL_LEVEL - 1];
        lv.sums[lv.head] = sums;
        for k in DETAIL_LEVEL..=self.levels.len() {
            if self.levels[k - 1].shift > bits {
                break;
            }
            let (lower, upper) = self.levels.split_at_mut(k);
            let lv = &mut lower[k - 1];
            lv.detail[lv.head].last = [t, v];
            if let Some(up) = upper.first_mut() {
                let (s, u) = (lv.sums[lv.head], &mut up.sums[up.head]);
                *u = [u[0] + s[0], u[1] + s[1], u[2] + s[2]];
            }
        }
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

    /// Heap bytes: 16 per sample of capacity for the raw ring plus the levels (≈1.5 per
    /// sample, see the [module documentation](self)).
    pub fn memory_bytes(&self) -> usize {
        fn bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * size_of::<T>()
        }
        let levels: usize =
            self.levels.iter().map(|l| bytes(&l.cells) + bytes(&l.detail) + bytes(&l.sums)).sum();
        bytes(&self.t) + bytes(&self.v) + bytes(&self.levels) + levels
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

    /// M4 view query: partitions the samples with `t` in `[t0_s, t1_s)` into consecutive
    /// groups, at most one per pixel column of the window split into `width_px` equal columns,
    /// and writes to `out` (cleared first), in time order, for every group its first, min, max
    /// and last sample as `[t, value]` points — each an actual stored sample, min and max at the
    /// times where they occur (first occurrence), in sample order, without duplicates (a
    /// one-sample group gives one point). Preceded by the last sample before `t0_s` and
    /// followed by the first sample at or after `t1_s`, if any, so lines reach the plot edges.
    ///
    /// While a column holds fewer than 256 samples on average, the groups are exactly the
    /// pixel columns. Beyond, a group is a run of whole cells of the level whose cells hold
    /// S ≤ samples-per-column samples, starting in its column; its last cell may reach into the
    /// next column: the group of column c holds samples with `t` in `[edge(c), edge(c + 2))`
    /// only, fewer than S of them in column c + 1 (see the [module documentation](self)).
    ///
    /// At most `4 · width_px + 2` points whatever the history length; cost
    /// O(width_px · log n) for exact columns, O(width_px + log n) for whole-cell groups, which
    /// read 1 to 4 cells per column from the arrays of one level — dense columns are never
    /// scanned, and a long history is not touched beyond the window's two ends. Empty output
    /// unless `t0_s < t1_s`, `t1_s - t0_s` is finite and `width_px > 0`.
    pub fn view(&self, t0_s: f64, t1_s: f64, width_px: usize, out: &mut Vec<[f64; 2]>) {
        out.clear();
        #[cfg(test)]
        GROUPS.with(|g| g.borrow_mut().clear());
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
        let cols = Columns { t0: t0_s, t1: t1_s, width: width_px };
        let level = self.group_level(in_window / width_px as u64);
        if level == 0 || !self.view_grouped(&cols, start, end, level, out) {
            self.view_exact(&cols, start, end, out);
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

    /// Count, min, max, mean and RMS of the non-NaN values of the samples with `t` in
    /// `[t0_s, t1_s)`; `None` if there are none. O(log n) like [`min_max`](Self::min_max) (the
    /// sums come from the levels' per-cell sums, with at most 255 raw samples read at each end
    /// of the window), so it can be shown for the visible window every frame.
    ///
    /// Min and max are those of [`min_max`](Self::min_max), `±inf` included; mean and RMS are
    /// computed from f64 sums, so an infinity makes them infinite or NaN as documented on
    /// [`WindowStats`]. The sums are accumulated cell by cell (a tree), so their rounding error
    /// is far below that of a sequential sum over the window.
    pub fn stats(&self, t0_s: f64, t1_s: f64) -> Option<WindowStats> {
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
        if !e.min.found() {
            return None;
        }
        let [sum, sum_sq, n] = self.range_sums(a, b);
        Some(WindowStats {
            count: n as u64,
            min: e.min.val,
            max: e.max.val,
            mean: sum / n,
            rms: (sum_sq / n).sqrt(),
        })
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
    /// the cells around it that share a parent cell (where the ragged runs of both columns
    /// lie).
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
        for (k, lv) in self.levels.iter().enumerate() {
            if (1u64 << lv.shift) > span {
                break;
            }
            let (j, head) = (i >> lv.shift, newest >> lv.shift);
            // Children per parent cell (level k + 2, if it exists).
            let fan = if k + 2 <= self.levels.len() { 1 << self.up_bits(k + 2) } else { FANOUT };
            let block = j & !(fan - 1);
            for m in (0..fan).step_by(4).chain([fan - 1]) {
                let m = block + m;
                if m <= head && head - m < lv.cells.len() as u64 {
                    prefetch(&lv.cells, lv.pos(head, m));
                }
            }
        }
    }

    /// First index in `[lo, hi)` whose time is `>= edge`, or `hi`. Binary search, narrowed
    /// first on the detail levels' first times from the coarsest level down (a level leaves
    /// less than one of its cells; the next level used is one where that spans at least 8
    /// cells), so that a search in a long history touches a few cache lines per level instead
    /// of missing the cache all the way down the raw times.
    fn lower_bound(&self, mut lo: u64, mut hi: u64, edge: f64) -> u64 {
        if lo >= hi {
            return hi;
        }
        let newest = self.next - 1;
        // Only levels where the range spans several cells: narrowing by a factor of 4 per
        // level would cost a cache miss per level for little. (Most searches are short ones,
        // from the exact view's column boundaries: they skip the levels at once.)
        let detail = self.levels.get(DETAIL_LEVEL - 1..).unwrap_or(&[]);
        let used = detail.iter().take_while(|lv| 8 << lv.shift <= hi - lo).count();
        for lv in detail[..used].iter().rev() {
            let size = 1u64 << lv.shift;
            if hi - lo < 8 * size {
                continue;
            }
            // The cells starting in [lo, hi): their first samples were stored, so their first
            // times are valid.
            let (ja, jb) = (lo.div_ceil(size), (hi - 1) / size + 1);
            let n = (jb - ja) as usize;
            count_work(u64::BITS as u64 - (n as u64).leading_zeros() as u64);
            let (s1, s2) = ring_slices(&lv.detail, lv.pos(newest >> lv.shift, ja), n);
            let k = if s1[s1.len() - 1].first[0] >= edge {
                s1.partition_point(|d| d.first[0] < edge)
            } else {
                s1.len() + s2.partition_point(|d| d.first[0] < edge)
            };
            // Cell ja + k is the first starting at or after `edge`.
            let j = ja + k as u64;
            if j > ja {
                lo = (j - 1) * size + 1;
            }
            if j < jb {
                hi = j * size;
            }
        }
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
        // The guess is usually exact or one off (columns of a steady rate alternate between two
        // lengths).
        if guess > lo && guess < hi {
            count_work(2);
            if self.t_at(guess) >= edge {
                if self.t_at(guess - 1) < edge {
                    return guess;
                }
                if guess - 1 == lo || self.t_at(guess - 2) < edge {
                    return guess - 1;
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

    /// The level whose cells a view with `per_col` samples per pixel column groups, or 0 for
    /// exact pixel columns: the coarsest level whose cells hold at most `per_col` samples, if
    /// it carries the per-cell detail (levels ≥ [`DETAIL_LEVEL`]).
    fn group_level(&self, per_col: u64) -> usize {
        if per_col == 0 {
            return 0;
        }
        let level = self.levels.iter().take_while(|lv| 1u64 << lv.shift <= per_col).count();
        if level >= DETAIL_LEVEL { level } else { 0 }
    }

    /// View with exact pixel columns over the window's samples `[start, end)`.
    fn view_exact(&self, cols: &Columns, start: u64, end: u64, out: &mut Vec<[f64; 2]>) {
        let Columns { t0, t1, width } = *cols;
        let out = &mut Batch::new(out);
        if end - start < PIPELINE_MIN_SAMPLES {
            self.for_each_column(t0, t1, width, start, end, |a, b| {
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
            self.for_each_column(t0, t1, width, start, end, |a, b| {
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
        out.flush();
    }

    /// View over the window's samples `[start, end)` whose groups are runs of whole cells of
    /// `level` (≥ [`DETAIL_LEVEL`]): the group of column c is made of the cells that start in
    /// c. Returns `false` (having written nothing) if the window holds no whole cell.
    ///
    /// Only these samples are resolved through finer levels and the raw ring, as exact column
    /// pieces: the window's ragged ends before the first and after the last whole cell, and
    /// "wide" cells whose samples reach past the next column (a gap or an irregular rate) —
    /// those would stretch a group over more than two columns. Everything else is read from
    /// the level's own arrays, in order.
    fn view_grouped(
        &self,
        cols: &Columns,
        start: u64,
        end: u64,
        level: usize,
        out: &mut Vec<[f64; 2]>,
    ) -> bool {
        let lv = &self.levels[level - 1];
        let shift = lv.shift;
        let (ja, jb) = (start.div_ceil(1 << shift), end >> shift);
        if ja >= jb {
            return false;
        }
        let out = &mut Batch::new(out);
        let mut g = Group::NONE;
        self.exact_pieces(cols, start, ja << shift, level, &mut g, out);
        let cells = CellPos::new(lv, (self.next - 1) >> shift, ja);
        let first_t = |j: u64| lv.detail[cells.of(j)].first[0];
        // The first cell starting at or after a column edge is predicted from the cells' mean
        // duration: exact for a steady rate, so the search for it takes two probes and its
        // branches stay predictable.
        let t_ja = first_t(ja);
        let per_cell = if jb - ja > 1 { (first_t(jb - 1) - t_ja) / (jb - 1 - ja) as f64 } else { 0.0 };
        let cells_per_s = if per_cell > 0.0 { 1.0 / per_cell } else { 0.0 };
        let mut j = ja;
        let mut col = cols.of(t_ja);
        let mut e1 = cols.edge(col + 1);
        while j < jb {
            let e2 = cols.edge(col + 2);
            // The group runs up to the first cell starting in a later column, predicted as
            // ja + ceil(x). The ceiling goes through a signed conversion (one instruction, an
            // unsigned one takes several); `as` maps NaN to 0.
            let x = ((e1 - t_ja) * cells_per_s).clamp(0.0, (jb - ja) as f64);
            let guess = ja + (x as i64 + ((x as i64 as f64) < x) as i64) as u64;
            let j2 = gallop(j + 1, jb, guess, |k| first_t(k) < e1);
            // Its last cell is the only one that can reach past e1; it must not reach e2.
            let wide = lv.detail[cells.of(j2 - 1)].last[0] >= e2;
            let run_end = j2 - wide as u64;
            if run_end > j {
                g.add(col, &self.cell_piece(lv, &cells, j, run_end), level, out);
            }
            if wide {
                self.exact_pieces(cols, (j2 - 1) << shift, j2 << shift, level, &mut g, out);
            }
            j = j2;
            if j < jb {
                // Cell j starts at or after e1 (and after the wide cell's last sample, if any).
                let t = first_t(j);
                if t < e2 {
                    (col, e1) = (col + 1, e2);
                } else {
                    col = cols.of(t);
                    e1 = cols.edge(col + 1);
                }
            }
        }
        self.exact_pieces(cols, jb << shift, end, level, &mut g, out);
        g.flush(level, out);
        out.flush();
        true
    }

    /// Adds the samples `[a, b)` to the grouped view as exact column pieces (one per non-empty
    /// pixel column), each found like a column of the exact view.
    fn exact_pieces(&self, cols: &Columns, a: u64, b: u64, level: usize, g: &mut Group, out: &mut Batch<'_>) {
        let mut x = a;
        while x < b {
            let col = cols.of(self.t_at(x));
            // (`max`: progress even if a sample lay outside the window.)
            let y = self.lower_bound_near(x, b, cols.edge(col + 1), x + 1).max(x + 1);
            let mut c = self.pick_column(x, y, false);
            self.resolve_column(&mut c, false);
            g.add(col, &self.column_piece(&c), level, out);
            x = y;
        }
    }

    /// The piece made of the whole cells `[j, r)` of `lv` (all complete), from the level's
    /// arrays alone.
    #[inline]
    fn cell_piece(&self, lv: &Level, cells: &CellPos, j: u64, r: u64) -> Piece {
        let n = (r - j) as usize;
        count_work(n as u64 + 4);
        let p = cells.of(j);
        let (s1, s2) = ring_slices(&lv.cells, p, n);
        // First occurrences: only a strict improvement moves an extreme. An empty cell
        // ([+inf, -inf]) never improves on the initial bounds.
        let (mut mn, mut mx) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut kmin, mut kmax) = (usize::MAX, usize::MAX);
        for (base, run) in [(0, s1), (s1.len(), s2)] {
            for (k, c) in run.iter().enumerate() {
                if c[0] < mn {
                    (mn, kmin) = (c[0], base + k);
                }
                if c[1] > mx {
                    (mx, kmax) = (c[1], base + k);
                }
            }
        }
        if kmin == usize::MAX || kmax == usize::MAX {
            // No min below +inf (or no max above -inf): the extreme is that infinity, first
            // held by the first non-empty cell — if there is one.
            let nonempty = s1.iter().chain(s2).position(|c| c[0] <= c[1]).unwrap_or(usize::MAX);
            if kmin == usize::MAX {
                kmin = nonempty;
            }
            if kmax == usize::MAX {
                kmax = nonempty;
            }
        }
        let (first, last) = (lv.detail[p].first, lv.detail[cells.of(r - 1)].last);
        let first = Point { idx: j << lv.shift, t: first[0], v: first[1] };
        let last = Point { idx: (r << lv.shift) - 1, t: last[0], v: last[1] };
        if kmin == usize::MAX {
            return Piece { first, last, min: first, max: first, found: false };
        }
        // The cell's own value is plotted (not `mn`/`mx`), so that the bits of a signed zero
        // are those of the sample.
        let point = |k: usize, side: usize| {
            let cell = j + k as u64;
            let q = cells.of(cell);
            let e = &lv.detail[q];
            Point { idx: (cell << lv.shift) + e.at[side] as u64, t: e.t[side], v: lv.cells[q][side] }
        };
        Piece { first, last, min: point(kmin, 0), max: point(kmax, 1), found: true }
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
                    level => prefetch(&self.levels[level - 1].detail, pick.pos),
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
    fn emit_column(&self, c: &Column, out: &mut Batch<'_>) {
        emit_piece(&self.column_piece(c), 0, out);
    }

    /// The piece of a column whose extremes are resolved to raw samples.
    #[inline(always)]
    fn column_piece(&self, c: &Column) -> Piece {
        let point = |i: u64| {
            let p = self.pos(i);
            Point { idx: i, t: self.t[p], v: self.v[p] }
        };
        // The extremes' values are known from the cells: only their times are read.
        let extreme = |pick: &Pick| Point { idx: pick.idx, t: self.t[pick.pos], v: pick.val };
        Piece {
            first: point(c.a),
            last: point(c.b - 1),
            min: extreme(&c.e.min),
            max: extreme(&c.e.max),
            found: c.e.min.found(),
        }
    }

    /// log2 of the fan-out from level `level - 1` (0: the raw samples) to level `level`.
    #[inline]
    fn up_bits(&self, level: usize) -> u32 {
        let below = if level > 1 { self.levels[level - 2].shift } else { 0 };
        self.levels[level - 1].shift - below
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
                let bits = self.up_bits(level + 1);
                let fan = 1u64 << bits;
                let l_up = (l + fan - 1) & !(fan - 1);
                let r_down = r & !(fan - 1);
                if l_up < r_down {
                    if l < l_up {
                        self.fold_run(level, l, l_up, &mut e);
                    }
                    if r_down < r {
                        right[n_right] = (level, r_down, r);
                        n_right += 1;
                    }
                    l = l_up >> bits;
                    r = r_down >> bits;
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

    /// `[Σv, Σv², n]` over the non-NaN values of the stored samples `[a, b)`: the sums of the
    /// coarsest cells of levels ≥ [`DETAIL_LEVEL`] that fit inside the range, plus at most 255
    /// raw samples at each end. `a` must not precede the oldest stored
    /// sample, so every cell used is complete and fully stored.
    fn range_sums(&self, a: u64, b: u64) -> [f64; 3] {
        debug_assert!(self.oldest() <= a && a <= b && b <= self.next);
        let mut acc = [0.0; 3];
        let Some(lv) = self.levels.get(DETAIL_LEVEL - 1) else {
            self.add_raw_sums(a, b, &mut acc);
            return acc;
        };
        let (mut l, mut r) = (a.div_ceil(1 << lv.shift), b >> lv.shift);
        if l >= r {
            self.add_raw_sums(a, b, &mut acc);
            return acc;
        }
        self.add_raw_sums(a, l << lv.shift, &mut acc);
        self.add_raw_sums(r << lv.shift, b, &mut acc);
        let mut level = DETAIL_LEVEL;
        loop {
            if level < self.levels.len() {
                let bits = self.up_bits(level + 1);
                let fan = 1u64 << bits;
                let l_up = (l + fan - 1) & !(fan - 1);
                let r_down = r & !(fan - 1);
                if l_up < r_down {
                    self.add_cell_sums(level, l, l_up, &mut acc);
                    self.add_cell_sums(level, r_down, r, &mut acc);
                    (l, r) = (l_up >> bits, r_down >> bits);
                    level += 1;
                    continue;
                }
            }
            self.add_cell_sums(level, l, r, &mut acc);
            return acc;
        }
    }

    /// Adds the sums of the raw samples `[a, b)` to `acc`.
    fn add_raw_sums(&self, a: u64, b: u64, acc: &mut [f64; 3]) {
        if a < b {
            let s = self.raw_sums(a, b);
            *acc = [acc[0] + s[0], acc[1] + s[1], acc[2] + s[2]];
        }
    }

    /// `[Σv, Σv², n]` over the non-NaN values of the stored samples `[a, b)` (`a < b`). Four
    /// interleaved accumulators, so that the additions do not wait for each other.
    fn raw_sums(&self, a: u64, b: u64) -> [f64; 3] {
        count_work(b - a);
        let (s1, s2) = ring_slices(&self.v, self.pos(a), (b - a) as usize);
        let mut acc = [[0.0; 4]; 3];
        for run in [s1, s2] {
            let mut quads = run.chunks_exact(4);
            for q in &mut quads {
                for (k, &x) in q.iter().enumerate() {
                    let ok = !x.is_nan();
                    let x = if ok { x } else { 0.0 };
                    acc[0][k] += x;
                    acc[1][k] += x * x;
                    acc[2][k] += if ok { 1.0 } else { 0.0 };
                }
            }
            for &x in quads.remainder() {
                let ok = !x.is_nan();
                let x = if ok { x } else { 0.0 };
                acc[0][0] += x;
                acc[1][0] += x * x;
                acc[2][0] += if ok { 1.0 } else { 0.0 };
            }
        }
        acc.map(|a| (a[0] + a[1]) + (a[2] + a[3]))
    }

    /// Adds the sums of the (complete) cells `[from, to)` of `level` to `acc`.
    fn add_cell_sums(&self, level: usize, from: u64, to: u64, acc: &mut [f64; 3]) {
        if from >= to {
            return;
        }
        count_work(to - from);
        let lv = &self.levels[level - 1];
        let (s1, s2) = ring_slices(&lv.sums, lv.pos((self.next - 1) >> lv.shift, from), (to - from) as usize);
        for s in s1.iter().chain(s2) {
            *acc = [acc[0] + s[0], acc[1] + s[1], acc[2] + s[2]];
        }
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
                (pick.idx << lv.shift) + lv.detail[pick.pos].at[side] as u64
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
    /// multiples of a step or jittered; sometimes a few gaps as long as the whole history, so
    /// that even the coarsest cells can straddle several pixel columns), random values of
    /// several kinds (walks, noise, small integers with many ties, zeros of both signs, NaN,
    /// ±inf, stretches of nothing but NaN and one infinity), single-sample spikes of huge
    /// magnitude and both signs (sometimes all of one magnitude, so that they tie), and
    /// (sometimes) invalid pushes that must be rejected.
    fn feed(s: &mut Series, rng: &mut Rng, n: usize) -> Signal {
        let dt = rng.pick(&[1e-3, 1.0, 0.25, 7.0]);
        let quantized = rng.chance(0.5);
        let p_repeat = rng.pick(&[0.0, 0.05, 0.3, 0.9]);
        let p_gap = rng.pick(&[0.0, 0.001, 0.01]);
        let p_huge = if rng.chance(0.3) { 3.0 / n.max(1) as f64 } else { 0.0 };
        let value_mode = rng.below(6);
        let stretch = rng.pick(&[300, 1000, 5000]);
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
                let huge = if rng.chance(p_huge) { 1 + rng.below(n as u64) } else { 0 };
                if quantized {
                    ticks += huge + if big { 10 + rng.below(1000) } else { 1 + rng.below(3) };
                    t = start + ticks as f64 * dt;
                } else {
                    t += dt * (huge as f64 + if big { 10.0 + 1000.0 * rng.unit() } else { 0.5 + rng.unit() });
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
                4 => (i as f64 * 0.01).sin() * 100.0,
                // Stretches of nothing but NaN, or NaN and one infinity: whole cells may be
                // empty, or hold one infinity as both their min and max.
                _ => match (i / stretch) % 5 {
                    0 => rng.unit(),
                    2 if rng.chance(0.5) => f64::INFINITY,
                    4 if rng.chance(0.5) => f64::NEG_INFINITY,
                    _ => f64::NAN,
                },
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

    /// What a view query did, for coverage: the level its groups were made of (0: exact
    /// columns) and whether a grouped view also cut exact pieces inside the window (a group
    /// boundary off the level's cell grid: a wide cell).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    struct ViewKind {
        level: usize,
        split: bool,
    }

    /// The column holding `t` (binary search over the edges, independent of `Columns::of`).
    fn col_of(t0: f64, t1: f64, w: usize, t: f64) -> usize {
        // Largest c with edge(c) <= t.
        let (mut lo, mut hi) = (0, w);
        while hi - lo > 1 {
            let m = (lo + hi) / 2;
            if column_edge(t0, t1, w, m) <= t { lo = m } else { hi = m }
        }
        lo
    }

    /// The level a view of `n_win` samples over `w` columns must group by: the coarsest level
    /// with cells of at most n_win / w samples, if it is ≥ 2; else 0 (exact columns).
    fn expected_level(s: &Series, n_win: usize, w: usize) -> usize {
        (DETAIL_LEVEL..=s.levels.len()).rev().find(|&k| cell_size(s, k) <= n_win / w).unwrap_or(0)
    }

    /// Samples per cell of `level` (1 for level 0, the raw samples).
    fn cell_size(s: &Series, level: usize) -> usize {
        if level == 0 { 1 } else { 1 << s.levels[level - 1].shift }
    }

    /// Checks one view query against a brute-force scan of the stored samples: the recorded
    /// groups partition the window, each lies where the grouping rule allows (an exact column,
    /// or starting in a column and ending before the next-but-one), and its points are the
    /// first, min, max and last of exactly its samples. `spikes` are indices into `stored`.
    fn check_view(
        s: &Series,
        stored: &[(f64, f64)],
        spikes: &[usize],
        (t0, t1): (f64, f64),
        w: usize,
        out: &mut Vec<[f64; 2]>,
    ) -> Result<Option<ViewKind>, TestCaseError> {
        s.view(t0, t1, w, out);
        let groups = GROUPS.with(|g| g.borrow().clone());
        let valid = t0.partial_cmp(&t1) == Some(std::cmp::Ordering::Less) && (t1 - t0).is_finite();
        if stored.is_empty() || !valid {
            prop_assert!(out.is_empty());
            return Ok(None);
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

        // The groups partition the window, in order, at most one per column.
        let base = s.oldest();
        let mut at = start;
        for g in &groups {
            prop_assert!(g.a == base + at as u64 && g.b > g.a, "groups do not partition the window: {g:?}");
            at = (g.b - base) as usize;
        }
        prop_assert_eq!(at, end, "groups do not cover the window");
        prop_assert!(groups.len() <= w);
        prop_assert_eq!(
            groups.iter().map(|g| g.points).sum::<usize>(),
            pts.len(),
            "points outside every group"
        );
        let level = groups.first().map_or(0, |g| g.level);
        prop_assert!(groups.iter().all(|g| g.level == level), "groups of mixed levels");
        let want = expected_level(s, end - start, w);
        if level != want {
            // Only a window without a whole cell of that level falls back to exact columns.
            let size = cell_size(s, want) as u64;
            let (a, b) = (base + start as u64, base + end as u64);
            prop_assert!(level == 0 && a.div_ceil(size) >= b / size, "level {} instead of {}", level, want);
        }
        let size = cell_size(s, level);

        let edge = |c: usize| column_edge(t0, t1, w, c);
        let mut spikes = spikes.iter().copied().filter(|&k| k >= start && k < end).peekable();
        let (mut p, mut prev_col, mut split) = (0, None, false);
        for g in &groups {
            let (i, j) = ((g.a - base) as usize, (g.b - base) as usize);
            let group = &stored[i..j];
            let col = col_of(t0, t1, w, group[0].0);
            prop_assert!(prev_col.is_none_or(|c| col > c), "two groups start in column {}", col);
            prev_col = Some(col);
            if level == 0 {
                // Exact pixel columns (with the partition and the increasing columns, each
                // group is all of its column).
                prop_assert!(
                    group.iter().all(|x| x.0 < edge(col + 1)),
                    "column {col}: sample of the next column"
                );
            } else {
                // Within two columns, holding fewer than one cell's samples of the second.
                prop_assert!(
                    group.iter().all(|x| x.0 < edge(col + 2)),
                    "group of column {col} spans > 2 columns"
                );
                let spill = group.iter().filter(|x| x.0 >= edge(col + 1)).count();
                prop_assert!(spill < size, "group of column {col}: {spill} samples in the next column");
                // A boundary lies on the cell grid, or exactly on a column edge.
                if i > start && !(base as usize + i).is_multiple_of(size) {
                    prop_assert!(
                        col_of(t0, t1, w, stored[i - 1].0) < col,
                        "boundary {i} neither aligned nor exact"
                    );
                    split = true;
                }
            }

            let n_pts = g.points;
            let gp = &pts[p..p + n_pts];
            prop_assert!((1..=4).contains(&n_pts), "column {}: {} points", col, n_pts);
            prop_assert!(same(gp[0], group[0]), "column {col}: first point is not the first sample");
            prop_assert!(same(gp[n_pts - 1], group[group.len() - 1]), "column {col}: wrong last point");
            // Every point is a sample of the group, each at most once, in sample order.
            let mut k = 0;
            for &q in gp {
                let Some(d) = group[k..].iter().position(|&x| same(q, x)) else {
                    return Err(TestCaseError::fail(format!(
                        "column {col}: {q:?} is not a later sample of the group"
                    )));
                };
                k += d + 1;
            }
            if group.len() == 1 {
                prop_assert_eq!(n_pts, 1, "one sample must give one point");
            }
            let want = brute_min_max(group.iter().map(|x| x.1));
            let got = brute_min_max(gp.iter().map(|q| q[1]));
            prop_assert_eq!(
                got,
                want,
                "column {} of {} ({} samples): plotted vs true min/max",
                col,
                w,
                j - i
            );
            // The extremes are placed at their first occurrence in the group.
            if let Some((lo, hi)) = want {
                for m in [lo, hi] {
                    let plotted = gp.iter().find(|q| q[1] == m).unwrap();
                    let first = group.iter().find(|x| x.1 == m).unwrap();
                    prop_assert!(same(*plotted, *first), "column {col}: {m} not at its first occurrence");
                }
            }
            // Injected spikes are never hidden: the plotted extent reaches them, and a spike
            // that is its group's unique extreme is plotted exactly where it occurred.
            let (gmin, gmax) = got.unwrap_or((f64::NAN, f64::NAN));
            let unique = |m: f64| group.iter().filter(|x| x.1 == m).count() == 1;
            let (unique_min, unique_max) = (unique(gmin), unique(gmax));
            while let Some(k) = spikes.next_if(|&k| k < j) {
                let v = stored[k].1;
                prop_assert!(if v > 0.0 { gmax >= v } else { gmin <= v }, "spike {:?} hidden", stored[k]);
                if (v == gmax && unique_max) || (v == gmin && unique_min) {
                    prop_assert!(gp.iter().any(|&q| same(q, stored[k])), "spike {:?} moved", stored[k]);
                }
            }
            p += n_pts;
        }
        Ok(Some(ViewKind { level, split }))
    }

    /// A width for a view of `n_win` samples: random, or aimed at one level of `s` (or at
    /// exact columns), so that every level's grouping gets exercised.
    fn gen_width_for(rng: &mut Rng, s: &Series, n_win: usize) -> usize {
        let top = s.levels.len();
        if rng.chance(0.4) || n_win == 0 || top < DETAIL_LEVEL {
            return gen_width(rng);
        }
        let level = DETAIL_LEVEL + rng.below((top - DETAIL_LEVEL + 1) as u64) as usize;
        let per_col = if rng.chance(0.2) {
            1.0 + 254.0 * rng.unit() // exact columns, dense
        } else {
            cell_size(s, level) as f64 * (1.0 + 3.0 * rng.unit())
        };
        ((n_win as f64 / per_col) as usize).clamp(1, 4000)
    }

    /// Random windows and widths over `s`; returns what kinds of view they exercised.
    fn check_views(
        s: &Series,
        rng: &mut Rng,
        sig: &Signal,
        views: usize,
    ) -> Result<Vec<ViewKind>, TestCaseError> {
        let stored = sig.stored(s.len());
        let offset = sig.accepted.len() - stored.len();
        let spikes: Vec<usize> = sig.spikes.iter().filter(|&&k| k >= offset).map(|&k| k - offset).collect();
        let mut out = Vec::new();
        let mut kinds = Vec::new();
        for _ in 0..views {
            let window = gen_window(rng, &sig.accepted, stored);
            let n_win = stored
                .partition_point(|x| x.0 < window.1)
                .saturating_sub(stored.partition_point(|x| x.0 < window.0));
            let w = gen_width_for(rng, s, n_win);
            kinds.extend(check_view(s, stored, &spikes, window, w, &mut out)?);
        }
        Ok(kinds)
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

        /// The M4 view is spike-true at every zoom level, wrapped or not: exact columns and
        /// whole-cell groups of levels 2 to 4 (cells of 256 to 4096 samples; the deeper levels
        /// need longer histories, see `deep_views_match_brute_force`).
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
            check_views(&s, &mut rng, &sig, 8)?;
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

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Window statistics against brute force, over windows of every size (so the sums
        /// come from every level and from raw samples at both ends).
        #[test]
        fn stats_match_brute_force(
            seed in any::<u64>(),
            n in prop_oneof![1 => 0usize..64, 4 => 0usize..40_000, 1 => 65_536usize..80_000],
            cap_class in 0u32..5,
        ) {
            let mut rng = Rng(seed);
            let mut s = Series::new(capacity_for(&mut rng, n, cap_class));
            let sig = feed(&mut s, &mut rng, n);
            let stored = sig.stored(s.len());
            for _ in 0..24 {
                let (t0, t1) = gen_window(&mut rng, &sig.accepted, stored);
                let (a, b) = (stored.partition_point(|x| x.0 < t0), stored.partition_point(|x| x.0 < t1));
                check_stats(s.stats(t0, t1), stored[a..b.max(a)].iter().map(|x| x.1), (t0, t1))?;
            }
        }
    }

    proptest! {
        // Few cases: each builds a history of a few hundred thousand samples.
        #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

        /// Whole-cell groups of levels up to 6 (cells of up to 65536 samples), on histories
        /// long enough to hold several such cells per window.
        #[test]
        fn deep_views_match_brute_force(seed in any::<u64>(), n in 140_000usize..240_000, wrapped in any::<bool>()) {
            let mut rng = Rng(seed);
            let cap = if wrapped { n - 1 - rng.below(n as u64 / 3) as usize } else { n };
            let mut s = Series::new(cap);
            let sig = feed(&mut s, &mut rng, n);
            check_views(&s, &mut rng, &sig, 12)?;
        }
    }

    /// The property tests above draw their histories at random; this fixed set of histories
    /// makes sure that every kind of view is checked on every run: exact columns, and groups
    /// of levels 2 to 6 (cells of 256 to 65536 samples), each also with wide cells cut into
    /// exact pieces.
    #[test]
    fn views_cover_every_level() {
        let mut kinds = std::collections::HashSet::new();
        for seed in 0..4 {
            let mut rng = Rng(seed);
            let n = 140_000 + rng.below(60_000) as usize;
            let mut s = Series::new(n - rng.below(2) as usize * 20_000);
            let sig = feed(&mut s, &mut rng, n);
            kinds.extend(check_views(&s, &mut rng, &sig, 24).unwrap());
        }
        // A regular history with one long gap inside a cell, viewed whole over 3 columns: the
        // cell holding the gap straddles all of them.
        for level in 2..=6 {
            let size =
                1usize << (FANOUT_BITS * DETAIL_LEVEL as u32 + DETAIL_FANOUT_BITS * (level - 2) as u32);
            let n = 3 * size + 1234;
            let mut rng = Rng(level as u64);
            let mut s = Series::new(n);
            let mut stored = Vec::with_capacity(n);
            for i in 0..n {
                let t = i as f64 * 1e-3 + if i >= size + size / 2 { n as f64 * 1e-2 } else { 0.0 };
                let v = if rng.chance(0.01) { 1e9 } else { rng.unit() };
                s.push(t, v);
                stored.push((t, v));
            }
            let window = (0.0, stored[n - 1].0 + 1.0);
            kinds.extend(check_view(&s, &stored, &[], window, 3, &mut Vec::new()).unwrap());
        }
        for level in 2..=6 {
            for split in [false, true] {
                assert!(
                    kinds.contains(&ViewKind { level, split }),
                    "level {level}, split {split} not covered: {kinds:?}"
                );
            }
        }
        assert!(kinds.contains(&ViewKind { level: 0, split: false }));
    }

    /// Checks `got` against the brute-force statistics of `values`.
    fn check_stats(
        got: Option<WindowStats>,
        values: impl Iterator<Item = f64>,
        window: (f64, f64),
    ) -> Result<(), TestCaseError> {
        let values: Vec<f64> = values.filter(|v| !v.is_nan()).collect();
        let Some(got) = got else {
            prop_assert!(values.is_empty(), "no stats for {} values in {:?}", values.len(), window);
            return Ok(());
        };
        prop_assert_eq!(got.count, values.len() as u64, "count in {:?}", window);
        let (min, max) = brute_min_max(values.iter().copied()).unwrap();
        prop_assert!(got.min == min && got.max == max, "{:?} vs ({}, {}) in {:?}", got, min, max, window);
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let rms = (values.iter().map(|v| v * v).sum::<f64>() / n).sqrt();
        let scale = values.iter().map(|v| v.abs()).filter(|v| v.is_finite()).fold(0.0, f64::max);
        let close = |got: f64, want: f64, tol: f64| {
            if want.is_finite() {
                (got - want).abs() <= tol
            } else {
                got.to_bits() == want.to_bits() || got.is_nan() && want.is_nan()
            }
        };
        prop_assert!(close(got.mean, mean, 1e-9 * scale), "mean {} vs {} in {:?}", got.mean, mean, window);
        prop_assert!(close(got.rms, rms, 1e-9 * rms), "rms {} vs {} in {:?}", got.rms, rms, window);
        Ok(())
    }

    /// Brute-force check of every level cell that holds a stored sample: a cell fully stored
    /// must equal the min/max of its samples, the cell being filled at the head the min/max of
    /// the samples pushed into it so far; likewise the positions of its extremes and its first
    /// sample. Last sample and sums are checked once a cell is complete.
    fn check_levels(s: &Series, accepted: &[(f64, f64)], only_head: bool) {
        let (lo, next) = (s.oldest(), s.next);
        if next == 0 {
            return;
        }
        let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for (k, lv) in s.levels.iter().enumerate() {
            let size = 1u64 << lv.shift;
            let newest = (next - 1) >> lv.shift;
            let oldest_full = lo.div_ceil(size);
            let from = if only_head { newest.max(oldest_full) } else { oldest_full };
            for j in from..=newest {
                let samples = &accepted[(j * size) as usize..((j + 1) * size).min(next) as usize];
                let want = brute_min_max(samples.iter().map(|x| x.1)).map_or(EMPTY_CELL, |(a, b)| [a, b]);
                let p = lv.pos(newest, j);
                let got = lv.cells[p];
                assert!(
                    got[0] == want[0] && got[1] == want[1],
                    "level {} cell {j} after {next} pushes: {got:?} != {want:?}",
                    k + 1
                );
                if lv.detail.is_empty() {
                    continue;
                }
                if want[0] <= want[1] {
                    let first = |m: f64| samples.iter().position(|x| x.1 == m).unwrap();
                    let at = [first(want[0]), first(want[1])];
                    assert_eq!(lv.detail[p].at, at.map(|a| a as u32), "level {} cell {j} offsets", k + 1);
                    assert_eq!(
                        bits(&lv.detail[p].t),
                        bits(&at.map(|a| samples[a].0)),
                        "level {} cell {j} times",
                        k + 1
                    );
                    assert_eq!(
                        bits(&got),
                        bits(&at.map(|a| samples[a].1)),
                        "level {} cell {j} extremes' bits",
                        k + 1
                    );
                }
                assert_eq!(
                    bits(&lv.detail[p].first),
                    bits(&[samples[0].0, samples[0].1]),
                    "level {} cell {j} first",
                    k + 1
                );
                let complete = samples.len() as u64 == size;
                if complete {
                    let last = samples[samples.len() - 1];
                    assert_eq!(
                        bits(&lv.detail[p].last),
                        bits(&[last.0, last.1]),
                        "level {} cell {j} last",
                        k + 1
                    );
                }
                if complete {
                    let values: Vec<f64> = samples.iter().map(|x| x.1).filter(|v| !v.is_nan()).collect();
                    let sums = lv.sums[p];
                    assert_eq!(sums[2], values.len() as f64, "level {} cell {j} count", k + 1);
                    let want = [values.iter().sum::<f64>(), values.iter().map(|v| v * v).sum::<f64>()];
                    let scale = values.iter().map(|v| v * v).filter(|v| v.is_finite()).sum::<f64>();
                    for i in 0..2 {
                        let ok = if want[i].is_finite() {
                            (sums[i] - want[i]).abs() <= 1e-12 * scale.max(scale.sqrt())
                        } else {
                            sums[i].to_bits() == want[i].to_bits() || sums[i].is_nan() && want[i].is_nan()
                        };
                        assert!(ok, "level {} cell {j} sums {:?} vs {want:?}", k + 1, sums);
                    }
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
                let v = match (i / 700 % 3, rng.below(20)) {
                    // Stretches of nothing but NaN and one infinity: an empty cell must take an
                    // infinity equal to its placeholder bound, with its position.
                    (1, x) => [f64::NAN, f64::INFINITY][x as usize % 2],
                    (2, x) => [f64::NAN, f64::NEG_INFINITY][x as usize % 2],
                    (_, 0) => f64::NAN,
                    (_, 1) => f64::INFINITY,
                    (_, 2) => f64::NEG_INFINITY,
                    (_, 3) => 1e12,
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
        // The one column [0, 300) is grouped from level-2 cell 0 and an exact piece [256, 300),
        // itself answered from level-1 cells 16..18 (samples 256..288) and raw samples
        // 288..300; the maximum 5 occurs in both runs of the piece.
        let mut s = Series::new(1000);
        for i in 0..300 {
            let v = if i == 270 || i == 295 { 5.0 } else { 0.0 };
            s.push(i as f64, v);
        }
        let mut out = Vec::new();
        s.view(0.0, 300.0, 1, &mut out);
        assert_eq!(out, vec![[0.0, 0.0], [270.0, 5.0], [299.0, 0.0]]);
        // Ties between whole cells, and between the cells and the ragged end: the column
        // [10, 1000) is an exact piece [10, 256), level-2 cells 1 and 2, and a piece [768, 1000).
        let mut s = Series::new(1000);
        for i in 0..1000 {
            let v = match i {
                300 | 600 | 900 => 5.0,
                400 | 700 | 800 => -5.0,
                _ => 0.0,
            };
            s.push(i as f64, v);
        }
        s.view(10.0, 1000.0, 1, &mut out);
        assert_eq!(out, vec![[9.0, 0.0], [10.0, 0.0], [300.0, 5.0], [400.0, -5.0], [999.0, 0.0]]);
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
            let cells = s.levels.iter().flat_map(|l| {
                let ext = l.detail.iter().flat_map(|d| {
                    let pairs = [d.first, d.last, d.t].into_iter().flatten().map(f64::to_bits);
                    pairs.chain(d.at.map(u64::from))
                });
                let pairs = l.cells.iter().flatten().map(|x| x.to_bits());
                pairs.chain(ext).chain(l.sums.iter().flatten().map(|x| x.to_bits()))
            });
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
            // Levels: 16 B per 16 samples (level 1) + 96 B per 256·4^m samples (levels 2 + m)
            // ≈ 1.5 B per sample, i.e. 1/10.7 of the raw 16 B.
            let bound = raw + raw * 15 / 160 + 1024;
            assert!(m <= bound, "cap {cap}: {m} bytes > {bound}");
        }
        let s = Series::new(1_000_000);
        let per_sample = s.memory_bytes() as f64 / 1e6;
        assert!((17.4..17.6).contains(&per_sample), "{per_sample} B per sample");
    }

    /// The whole-history view touches no more elements on a long history than on a short one
    /// (whole cells of one level, at most 16 per column, instead of samples or ragged ends
    /// per column), and min_max and stats touch O(log n).
    #[test]
    fn view_work_does_not_grow_with_history() {
        let work = |f: &mut dyn FnMut()| {
            WORK.with(|w| w.set(0));
            f();
            WORK.with(|w| w.get())
        };
        let mut out = Vec::new();
        let w = 200;
        let mut whole = Vec::new();
        // 10^4 (exact columns of 50 samples), 10^5 and 10^6 (groups of 1-2 cells of 256 and
        // 4096 samples), and 1023 samples per column: 4 cells of 256 per group, the most.
        for n in [10_000usize, 100_000, 1_000_000, 1023 * w] {
            let mut s = Series::new(n);
            for i in 0..n {
                s.push(i as f64 * 1e-3, ((i * 2_654_435_761) % 1000) as f64);
            }
            let t_end = n as f64 * 1e-3;
            let got = work(&mut || s.view(0.0, t_end, w, &mut out));
            assert!(out.len() > 3 * w);
            let newest = work(&mut || s.view(t_end - 10.0, t_end, w, &mut out));
            let mm = work(&mut || {
                s.min_max(0.0, t_end);
            });
            let st = work(&mut || {
                s.stats(0.5, t_end - 0.5);
            });
            eprintln!("n={n}: whole {got}, newest {newest}, min_max {mm}, stats {st}");
            // Per group: the search for its end (2 probes when the guess is right), at most 4
            // cells and its boundary and extremes' cells; plus both ragged ends and the window
            // search.
            let bound = 12 * w as u64 + 1000;
            assert!(n == 10_000 || got < bound, "n={n}: whole-history view touched {got} > {bound}");
            assert!(mm < 200, "min_max touched {mm}");
            assert!(st < 800, "stats touched {st}");
            whole.push(got);
        }
        assert!(whole[1..].iter().all(|&x| x <= whole[0]), "whole-history view work grows: {whole:?}");
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
    fn cells_holding_only_nan_and_an_infinity() {
        // Level-2 cells of 256: cells 0-2 all NaN, cell 3 NaN and +inf, cells 4-5 NaN and -inf
        // (each starting with a NaN, so the infinity must replace the empty cell's placeholder
        // bound together with its position).
        let mut s = Series::new(10_000);
        for i in 0..1536 {
            let v = match i {
                768.. if i % 2 == 1 => [f64::INFINITY, f64::NEG_INFINITY][(i >= 1024) as usize],
                _ => f64::NAN,
            };
            s.push(i as f64, v);
        }
        let bits = |out: &[[f64; 2]]| out.iter().map(|p| p.map(f64::to_bits)).collect::<Vec<_>>();
        let (inf, nan) = (f64::INFINITY, f64::NAN);
        let mut out = Vec::new();
        // One group: an all-NaN ragged piece, then cells 1-3.
        s.view(100.0, 1024.0, 1, &mut out);
        assert_eq!(
            bits(&out),
            bits(&[[99.0, nan], [100.0, nan], [769.0, inf], [1023.0, inf], [1024.0, nan]])
        );
        s.view(100.0, 1536.0, 1, &mut out);
        assert_eq!(
            bits(&out),
            bits(&[[99.0, nan], [100.0, nan], [769.0, inf], [1025.0, -inf], [1535.0, -inf]])
        );
        let st = s.stats(0.0, 1024.0).unwrap();
        assert_eq!((st.count, st.min, st.max, st.mean, st.rms), (128, inf, inf, inf, inf));
        assert!(s.stats(0.0, 1536.0).unwrap().mean.is_nan(), "+inf and -inf: NaN mean");
        assert!(s.stats(0.0, 768.0).is_none(), "all NaN");
    }

    #[test]
    fn stats_basics() {
        let mut s = Series::new(100_000);
        for i in 0..100_000 {
            s.push(i as f64 * 1e-3, if i % 2 == 0 { 3.0 } else { -1.0 });
        }
        let st = s.stats(0.0, 100.0).unwrap();
        assert_eq!((st.count, st.min, st.max, st.peak_to_peak()), (100_000, -1.0, 3.0, 4.0));
        assert!((st.mean - 1.0).abs() < 1e-12 && (st.rms - 5f64.sqrt()).abs() < 1e-12, "{st:?}");
        assert_eq!(s.stats(0.0, 0.0005).map(|st| (st.count, st.mean, st.rms)), Some((1, 3.0, 3.0)));
        assert!(
            s.stats(1e3, 2e3).is_none() && s.stats(5.0, 4.0).is_none() && s.stats(f64::NAN, 1.0).is_none()
        );
        assert_eq!(s.stats(f64::NEG_INFINITY, f64::INFINITY).map(|st| st.count), Some(100_000));
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
