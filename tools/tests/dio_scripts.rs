//! `nvme-dio` scripts built from the grammar's tokens, with random offsets and lengths
//! (zero, unaligned, past the end, near `u64::MAX`), executed on small emulated
//! controllers: the raw namespace with 512- and 4096-byte blocks, with protection
//! information, and smaller than one request; files of the extent layer (written and
//! preallocated); and a zoned namespace. Every run either succeeds
//! or fails with a typed error whose message names the step; nothing panics.

use std::path::{Path, PathBuf};

use nvme_tools::cli::ToolError;
use nvme_tools::dio_cmd::args::{parse_script, ScriptError};
use nvme_tools::dio_cmd::run;
use proptest::prelude::*;

/// Small devices covering each layout the script language addresses.
const DEVICES: &[&str] = &[
    "emu:size=1M,lba=512",
    "emu:size=2M,lba=4096",
    "emu:size=4M,lba=512,mdts=0",
    "emu:size=1M,lba=512,ms=8,pi=1",
    "emu:size=64K,lba=4096",
    "emu:zoned,size=4M,zone_size=1M",
];

/// Namespace bytes of the devices above, so offsets land near their ends.
const NS_BYTES: &[u64] = &[64 << 10, 1 << 20, 2 << 20, 4 << 20];

/// Input file sizes: empty, aligned to either block size, unaligned, several requests.
const INPUT_SIZES: &[usize] = &[0, 512, 1000, 4096, 8192, 12288 + 512, (1 << 20) + 4096];

/// A byte offset or length: small and aligned, unaligned, around the namespaces' ends,
/// around 2^63 and `u64::MAX`, or anything.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (0u64..2048).prop_map(|b| b * 512),
        6 => (0u64..512).prop_map(|b| b * 4096),
        1 => prop::sample::select(vec![1u64, 511, 513, 4095, 4097]),
        2 => (prop::sample::select(NS_BYTES.to_vec()), -2i64..=2)
            .prop_map(|(end, k)| end.wrapping_add_signed(k * 4096)),
        1 => (0u64..8).prop_map(|k| u64::MAX - k * 512),
        1 => (0u64..8).prop_map(|k| !4095u64 - k * 4096),
        1 => (0u64..4).prop_map(|k| (1u64 << 63) - k * 4096),
        1 => any::<u64>(),
    ]
}

/// How a number is written: decimal, hex, or with a unit when it has one exactly.
fn spelled(n: u64, style: u8) -> String {
    match style % 3 {
        0 => n.to_string(),
        1 => format!("{n:#x}"),
        _ if n != 0 && n % 4096 == 0 => format!("{}k", n / 1024),
        _ => n.to_string(),
    }
}

/// One step's words.
#[derive(Debug, Clone)]
enum StepSpec {
    Write {
        offset: u64,
        input: usize,
        sync: u8,
        hipri: bool,
        file: Option<u8>,
    },
    Read {
        offset: u64,
        length: u64,
        hipri: bool,
        file: Option<u8>,
    },
    Compare {
        offset: u64,
        expect: Result<usize, (u8, u64)>,
        file: Option<u8>,
    },
    Fallocate {
        offset: u64,
        length: u64,
        file: u8,
    },
}

fn file() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![2 => Just(None), 3 => (0u8..2).prop_map(Some)]
}

fn step() -> impl Strategy<Value = StepSpec> {
    prop_oneof![
        3 => (number(), 0..INPUT_SIZES.len(), 0u8..3, any::<bool>(), file()).prop_map(
            |(offset, input, sync, hipri, file)| StepSpec::Write { offset, input, sync, hipri, file }
        ),
        3 => (number(), number(), any::<bool>(), file())
            .prop_map(|(offset, length, hipri, file)| StepSpec::Read { offset, length, hipri, file }),
        2 => (
            number(),
            prop_oneof![
                (0..INPUT_SIZES.len()).prop_map(Ok),
                (any::<u8>(), number()).prop_map(Err),
            ],
            file(),
        )
            .prop_map(|(offset, expect, file)| StepSpec::Compare { offset, expect, file }),
        2 => (number(), number(), 0u8..2)
            .prop_map(|(offset, length, file)| StepSpec::Fallocate { offset, length, file }),
    ]
}

fn words(steps: &[(StepSpec, u8)], dir: &Path) -> Vec<String> {
    let input = |i: usize| dir.join(format!("in{i}")).display().to_string();
    let mut w: Vec<String> = Vec::new();
    for (n, (s, style)) in steps.iter().enumerate() {
        if n > 0 {
            w.push("+".into());
        }
        let num = |v: u64| spelled(v, *style);
        let mut push = |items: &[&str]| w.extend(items.iter().map(|s| s.to_string()));
        let file_words = |f: &Option<u8>| match f {
            Some(f) => vec!["--file".to_string(), format!("f{f}")],
            None => vec![],
        };
        match s {
            StepSpec::Write {
                offset,
                input: i,
                sync,
                hipri,
                file,
            } => {
                push(&["write", "--offset", &num(*offset), "--input", &input(*i)]);
                match sync {
                    1 => push(&["--dsync"]),
                    2 => push(&["--sync"]),
                    _ => {}
                }
                if *hipri {
                    push(&["--hipri"]);
                }
                w.extend(file_words(file));
            }
            StepSpec::Read {
                offset,
                length,
                hipri,
                file,
            } => {
                let out = dir.join(format!("out{n}")).display().to_string();
                push(&[
                    "read",
                    "--offset",
                    &num(*offset),
                    "--length",
                    &num(*length),
                    "--output",
                    &out,
                ]);
                if *hipri {
                    push(&["--hipri"]);
                }
                w.extend(file_words(file));
            }
            StepSpec::Compare {
                offset,
                expect,
                file,
            } => {
                push(&["compare", "--offset", &num(*offset)]);
                match expect {
                    Ok(i) => push(&["--input", &input(*i)]),
                    Err((byte, len)) => {
                        push(&["--pattern", &byte.to_string(), "--length", &num(*len)])
                    }
                }
                w.extend(file_words(file));
            }
            StepSpec::Fallocate {
                offset,
                length,
                file,
            } => {
                push(&[
                    "fallocate",
                    "--file",
                    &format!("f{file}"),
                    "--offset",
                    &num(*offset),
                    "--length",
                    &num(*length),
                ]);
            }
        }
    }
    w
}

/// Writes the input files every script may name.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    INPUT_SIZES
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let p = dir.join(format!("in{i}"));
            let data: Vec<u8> = (0..len).map(|k| (k / 512 + i) as u8).collect();
            std::fs::write(&p, data).expect("write an input file");
            p
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_scripts_run_or_fail_with_an_error_naming_the_step(
        device in prop::sample::select(DEVICES),
        steps in proptest::collection::vec((step(), any::<u8>()), 1..6),
        create_files in proptest::bool::weighted(0.8),
    ) {
        // Often the script first creates both files, so later steps reach the extent
        // layer instead of stopping at a file no step created.
        let mut steps = steps;
        if create_files && !device.contains("zoned") {
            let create = |file| (StepSpec::Write { offset: 0, input: 4, sync: 0, hipri: false, file: Some(file) }, 0);
            steps.splice(0..0, [create(0), create(1)]);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        inputs(dir.path());
        let words = words(&steps, dir.path());
        // Every script built here is well formed; only running it can fail.
        let parsed = match parse_script(&words) {
            Ok(parsed) => parsed,
            Err(ScriptError::Bad(msg) | ScriptError::Help(msg)) => {
                return Err(TestCaseError::fail(format!("{msg}: {words:?}")));
            }
        };
        prop_assert_eq!(parsed.len(), steps.len());
        match run::run(device, 1, &parsed, false) {
            Ok(report) => {
                prop_assert_eq!(report.steps.len(), parsed.len());
                let bytes: u64 = report.steps.iter().map(|s| s.counters.bytes).sum();
                prop_assert_eq!(report.totals.bytes, bytes);
            }
            Err(e @ (ToolError::Step(_) | ToolError::Invalid(_))) => {
                let msg = e.to_string();
                let named = (1..=parsed.len()).any(|n| {
                    let op = parsed[n - 1].name();
                    msg.starts_with(&format!("step {n} ({op})"))
                        || msg.starts_with(&format!("step {n} ({op}) at "))
                });
                prop_assert!(named, "{} does not name its step: {:?}", msg, words);
            }
            Err(other) => {
                return Err(TestCaseError::fail(format!("{other}: not a step error: {words:?}")));
            }
        }
    }
}
