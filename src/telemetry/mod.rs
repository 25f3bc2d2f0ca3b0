//! Telemetry: the bounded per-signal store with spike-true decimation for the plots, and
//! the CSV recorder that keeps every sample.

pub mod recorder;
pub mod series;

pub use recorder::{CsvRecorder, RecordError};
pub use series::Series;
