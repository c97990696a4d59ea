//! The device-string parser (`emu:OPTION=VALUE,...`) under random input: it returns a
//! configuration or an error that names the bad option or value, never panics, and a
//! configuration it accepts can be built.

use nvme_emu::{BackendKind, EmuConfig, EmuController, EmuError};
use proptest::prelude::*;

/// Every option name the parser knows.
const OPTIONS: &[&str] = &[
    "size",
    "lba",
    "ns",
    "vwc",
    "file",
    "null",
    "mode",
    "qpairs",
    "mqes",
    "dstrd",
    "mdts",
    "mpsmin",
    "mpsmax",
    "to",
    "vectors",
    "aerl",
    "serial",
    "log",
    "ms",
    "mset",
    "pi",
    "pil",
    "fuses",
    "sgl",
    "guard",
    "zoned",
    "zone_size",
    "zone_cap",
    "max_open",
    "max_active",
];

/// Values that are valid for some option, and values that are valid for none.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "0",
            "1",
            "3",
            "8",
            "15",
            "16",
            "64",
            "255",
            "512",
            "4096",
            "65535",
            "65536",
            "on",
            "off",
            "inline",
            "threaded",
            "ext",
            "sep",
            "first",
            "last",
            "crc16",
            "crc64",
            "1M",
            "768K",
            "4M",
            "64M",
            "1G",
            "16383P",
            "18446744073709551615",
            "17179869183G",
            "-1",
            "",
            " 1 ",
            "1T",
            "8E",
        ])
        .prop_map(String::from),
        any::<u64>().prop_map(|n| n.to_string()),
        (
            any::<u32>(),
            prop::sample::select(vec!["", "K", "M", "G", "T", "KiB", "b"])
        )
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        "[ -~]{0,12}",
    ]
}

/// One `key=value` or bare `key` item, with an occasional unknown key.
fn item() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            9 => prop::sample::select(OPTIONS).prop_map(String::from),
            1 => "[a-z_]{1,8}",
        ],
        proptest::option::weighted(0.9, value()),
    )
        .prop_map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k,
        })
}

/// A device string built from the grammar's tokens.
fn device_string() -> impl Strategy<Value = String> {
    proptest::collection::vec(item(), 0..6).prop_map(|items| format!("emu:{}", items.join(",")))
}

/// Checks that an error is one a person can act on: it names what was wrong.
fn check_error(input: &str, e: &EmuError) {
    let msg = e.to_string();
    assert!(!msg.is_empty());
    match e {
        EmuError::UnknownOption { option, .. } => {
            assert!(input.contains(option.as_str()), "{input}: {msg}");
            assert!(msg.contains(option.as_str()), "{msg}");
        }
        EmuError::InvalidValue { option, value, .. } => {
            assert!(input.contains(option), "{input}: {msg}");
            assert!(msg.contains(value.as_str()), "{msg}");
        }
        EmuError::NotEmu { name } => assert_eq!(name, input),
        EmuError::Conflict { reason } => assert!(!reason.is_empty()),
        other => panic!("parsing {input:?} failed with a non-parse error: {other}"),
    }
}

/// What an accepted configuration promises: it passes its own checks and the bytes its
/// backend would store fit in 64 bits.
fn check_config(cfg: &EmuConfig) {
    cfg.validate().expect("a parsed configuration validates");
    let total = cfg
        .blocks_per_namespace()
        .checked_mul(u64::from(cfg.lba_size) + u64::from(cfg.metadata.size))
        .and_then(|b| b.checked_mul(u64::from(cfg.namespaces)));
    assert!(total.is_some(), "{cfg:?} stores more than 2^64 bytes");
    assert!(cfg.stored_bytes_per_namespace() >= cfg.ns_size);
    if let Some(max) = cfg.max_transfer_bytes() {
        assert!(max >= 4096);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_string_parses_or_fails_with_a_named_cause(s in "\\PC{0,40}") {
        match s.parse::<EmuConfig>() {
            Ok(cfg) => check_config(&cfg),
            Err(e) => check_error(&s, &e),
        }
    }

    #[test]
    fn grammar_built_strings_parse_to_valid_configs_or_named_errors(s in device_string()) {
        match s.parse::<EmuConfig>() {
            Ok(cfg) => check_config(&cfg),
            Err(e) => check_error(&s, &e),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Small accepted configurations (RAM or null, at most 64 MiB in all) build a
    /// controller whose configuration is the one parsed.
    #[test]
    fn small_accepted_configs_build_a_controller(s in device_string()) {
        let Ok(cfg) = s.parse::<EmuConfig>() else { return Ok(()) };
        prop_assume!(!matches!(cfg.backend, BackendKind::File(_)));
        prop_assume!(cfg.ns_size.saturating_mul(u64::from(cfg.namespaces)) <= 64 << 20);
        let ctrl = EmuController::new(cfg.clone()).expect("a small valid config builds");
        prop_assert_eq!(ctrl.config(), &cfg);
    }
}

#[test]
fn a_size_whose_stored_bytes_overflow_is_refused() {
    // 16383 PiB of 512-byte blocks with 64 bytes of metadata each is more than 2^64
    // stored bytes; two namespaces of 8 EiB are too.
    for name in [
        "emu:size=17179869183G,ms=64",
        "emu:size=8589934592G,ns=2",
        "emu:size=17592186044415M,ns=1024",
    ] {
        let err = name.parse::<EmuConfig>().unwrap_err();
        assert!(err.to_string().contains("size"), "{name}: {err}");
    }
}
