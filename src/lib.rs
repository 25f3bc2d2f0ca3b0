//! drivebench: commissioning and monitoring of motor drives — several drives, one time base,
//! one e-stop, and a simulated bench so everything works without hardware.

pub mod backend;
pub mod bench;
pub mod console;
pub mod drive;
pub mod headless;
pub mod link;
pub mod loadtest;
pub mod logfile;
pub mod project;
pub mod protocol;
pub mod sim;
pub mod telemetry;
pub mod ui;
pub mod worker;
