//! Telemetry: the per-signal store with spike-true decimation for the plots, each drive's
//! shared store, the CSV recorder that keeps every sample and the recording thread around it.

pub mod playback;
pub mod recorder;
pub mod recording;
pub mod series;
pub mod store;

pub use recorder::{CsvRecorder, RecordError};
pub use recording::{RecordHub, RecordSummary, RecordedDrive, Recording};
pub use series::{Series, WindowStats};
pub use store::{DriveTelemetry, RateMeter, SharedTelemetry};
