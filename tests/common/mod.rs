//! Helpers shared by the end-to-end tests.

use std::process::{Command, Output};

/// Runs the `orbitmesh` binary built for these tests.
pub fn orbitmesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orbitmesh"))
        .args(args)
        .output()
        .expect("the orbitmesh binary runs")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
