//! Shared plumbing for the command-line tools.

#![forbid(unsafe_code)]

pub mod cli;
pub mod dio_cmd;
pub mod identify;
pub mod perf;
pub mod setup;
pub mod store_cmd;
pub mod zns;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (default: warnings and errors),
/// coloured only when stderr is a terminal.
pub fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // A second call (tests, embedding) keeps the first subscriber instead of panicking.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not for a pipe or a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
