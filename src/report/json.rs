//! One JSON object per event on a writer (stderr by default), for tools.

use crate::events::{Sink, Stamped};
use std::io::Write;
use std::sync::Mutex;

pub struct JsonLines<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines {
            out: Mutex::new(out),
        }
    }
}

impl<W: Write + Send> Sink for JsonLines<W> {
    fn emit(&self, event: &Stamped) {
        let Ok(line) = serde_json::to_string(event) else {
            return;
        };
        let mut out = self.out.lock().expect("sink lock");
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}
