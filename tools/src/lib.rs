//! Shared plumbing for the command-line tools.

pub mod cli;
pub mod dio_cmd;
pub mod identify;
pub mod perf;
pub mod setup;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (default: warnings and errors).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // A second call (tests, embedding) keeps the first subscriber instead of panicking.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
