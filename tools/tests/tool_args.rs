//! The value parsers of `nvme-perf`'s and `nvme-zns`'s flags under random strings:
//! each value is accepted within its documented bounds, or refused with an error that
//! quotes it; nothing panics.

use clap::Parser;
use nvme_tools::perf::args::PerfArgs;
use nvme_tools::zns::{parse_lba, parse_state};
use proptest::prelude::*;

/// A flag's value: numbers near every bound, units, signs, floats and noise.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "0",
            "1",
            "-1",
            "0.0",
            "-0",
            "1e3",
            "1e400",
            "NaN",
            "inf",
            "-inf",
            "86400",
            "86400.0001",
            "100",
            "101",
            "255",
            "256",
            "1024",
            "1025",
            "65534",
            "65535",
            "4k",
            "1M",
            "0x1000",
            "0x",
            "18446744073709551615",
            "18446744073709551616",
            "pract",
            "host",
            "off",
            "randrw",
            "poll",
            "",
            " ",
            "+5",
        ])
        .prop_map(String::from),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        "[-+0-9.eExkKMGTPiB]{1,12}",
        "\\PC{0,12}",
    ]
}

/// `nvme-perf`'s flags that take a value.
const PERF_FLAGS: &[&str] = &[
    "--queue-depth",
    "--io-size",
    "--workload",
    "--rwmixread",
    "--time",
    "--number-ios",
    "--warmup",
    "--qpairs",
    "--ns",
    "--mode",
    "--span",
    "--pi",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn perf_flag_values_parse_within_bounds_or_are_quoted_in_the_error(
        flag in prop::sample::select(PERF_FLAGS),
        v in value(),
    ) {
        let arg = format!("{flag}={v}");
        match PerfArgs::try_parse_from(["nvme-perf", "emu", arg.as_str()]) {
            Ok(a) => {
                prop_assert!((1..=65534).contains(&a.queue_depth));
                prop_assert!(a.rwmixread <= 100);
                prop_assert!(a.time > 0.0 && a.time <= 86_400.0, "{}", a.time);
                prop_assert!((0.0..=86_400.0).contains(&a.warmup), "{}", a.warmup);
                prop_assert!((1..=1024).contains(&a.qpairs));
                prop_assert!(a.nsid >= 1);
                prop_assert!(a.number_ios.is_none_or(|n| n >= 1));
                // A byte count given in decimal reads back as the same number.
                if flag == "--io-size" {
                    if let Ok(n) = v.trim().parse::<u64>() {
                        prop_assert_eq!(a.io_size, n);
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                // clap refuses an empty value of an enum flag before parsing it.
                let quoted = msg.contains(&format!("'{v}'"))
                    || (v.is_empty() && msg.contains(&format!("a value is required for '{flag}")));
                prop_assert!(quoted, "{}: {}", arg, msg);
            }
        }
    }

    #[test]
    fn zns_lbas_and_states_parse_or_quote_the_input(v in value()) {
        match parse_lba(&v) {
            Ok(lba) => {
                let t = v.trim();
                let back = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(hex) => format!("{lba:x}") == hex.trim_start_matches('0').to_ascii_lowercase()
                        || (lba == 0 && hex.chars().all(|c| c == '0')),
                    None => t.trim_start_matches('+').trim_start_matches('0') == lba.to_string()
                        || (lba == 0 && t.trim_start_matches('+').chars().all(|c| c == '0')),
                };
                prop_assert!(back, "{} parsed as {}", v, lba);
            }
            Err(msg) => prop_assert!(msg.contains(&format!("'{v}'")), "{}", msg),
        }
        if let Err(msg) = parse_state(&v) {
            prop_assert!(msg.contains(&format!("'{v}'")), "{}", msg);
        }
    }
}
