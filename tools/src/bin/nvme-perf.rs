//! `nvme-perf`: measure IOPS, throughput and latency of an NVMe namespace.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use nvme_tools::cli::{self, EXIT_FAILURE};
use nvme_tools::perf::args::PerfArgs;
use nvme_tools::perf::{pattern_check, run};

const TOOL: &str = "nvme-perf";

fn main() -> ExitCode {
    let args: PerfArgs = cli::parse_args(TOOL);
    nvme_tools::init_logging();
    if args.check_pattern {
        return check_pattern(&args);
    }
    let report = match run::run(&args) {
        Ok(r) => r,
        Err(e) => return cli::report_error(TOOL, &e),
    };
    if args.json {
        cli::print_json(&report);
    } else {
        cli::print_stdout(&report.human());
    }
    if report.passed() {
        return ExitCode::SUCCESS;
    }
    let mut why = Vec::new();
    if report.errors > 0 && report.soak.is_none() {
        why.push(format!(
            "{} I/O error{} (first: {})",
            report.errors,
            if report.errors == 1 { "" } else { "s" },
            report.first_error.as_deref().unwrap_or("unknown")
        ));
    }
    if report.verify_failures > 0 {
        why.push(format!(
            "{} block{} failed verification (first: {})",
            report.verify_failures,
            if report.verify_failures == 1 { "" } else { "s" },
            report.mismatches.first().map_or("unknown", String::as_str)
        ));
    }
    if let Some(soak) = report.soak.as_ref().filter(|s| !s.accounted) {
        why.push(format!(
            "faults not accounted for: {}",
            soak.problems.join("; ")
        ));
    }
    eprintln!("{TOOL}: error: {}", why.join("; "));
    ExitCode::from(EXIT_FAILURE)
}

/// `--check-pattern`: reads the area and fails on any block that is not whole.
fn check_pattern(args: &PerfArgs) -> ExitCode {
    let report = match pattern_check::run(args) {
        Ok(r) => r,
        Err(e) => return cli::report_error(TOOL, &e),
    };
    if args.json {
        cli::print_json(&report);
    } else {
        cli::print_stdout(&report.human());
    }
    if report.passed() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "{TOOL}: error: {} of {} blocks are not whole blocks of the pattern for their LBA (first: {})",
        report.blocks - report.whole,
        report.blocks,
        report.bad_blocks.first().map_or("unknown", String::as_str)
    );
    ExitCode::from(EXIT_FAILURE)
}
