//! Helpers shared by the tools' end-to-end tests.

use std::process::Command;

/// Runs the binary at `path` with `args`; returns (exit code, stdout, stderr).
pub fn run_tool(path: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {path}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
