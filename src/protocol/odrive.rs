//! placeholder
use crate::drive::{Command, ParamSpec, SignalSpec};
use crate::protocol::{Codec, CodecError, CodecOut};

pub struct ODriveCodec;

impl ODriveCodec {
    pub fn new(axis: u8, checksum: bool) -> Self {
        let _ = (axis, checksum);
        ODriveCodec
    }
}

impl Codec for ODriveCodec {
    fn signals(&self) -> Vec<SignalSpec> {
        Vec::new()
    }
    fn params(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    fn start(&mut self, _now_s: f64, _out: &mut CodecOut) {}
    fn command(&mut self, cmd: &Command, _now_s: f64, _out: &mut CodecOut) -> Result<(), CodecError> {
        Err(CodecError::Unsupported(format!("{cmd:?}")))
    }
    fn estop(&mut self, _now_s: f64, _out: &mut CodecOut) {}
    fn raw(&mut self, _text: &str, _now_s: f64, _out: &mut CodecOut) {}
    fn feed(&mut self, _bytes: &[u8], _now_s: f64, _out: &mut CodecOut) {}
    fn poll(&mut self, _now_s: f64, _out: &mut CodecOut) {}
    fn stop(&mut self, _now_s: f64, _out: &mut CodecOut) {}
}
