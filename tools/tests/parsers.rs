//! The tools' parsers of user- and device-provided input under random data: byte
//! counts, `nvme-dio` scripts, `nvme-identify` and `nvme-zns` models built from random
//! identify pages and zone reports, and `nvme-setup`'s readers of `/sys` and `/proc`
//! files with random contents. Each returns a value or a typed error, never panics.

use std::fs;
use std::path::Path;

use nvme::spec::identify::{CommandSetId, IdentifyNamespaceNvm, NamespaceIds, IDENTIFY_DATA_SIZE};
use nvme::spec::{Cap, IdentifyController, IdentifyNamespace, Version};
use nvme_tools::cli::parse_bytes;
use nvme_tools::dio_cmd::args::{parse_script, ScriptError};
use nvme_tools::identify::human;
use nvme_tools::identify::model::{ControllerJson, IdentifyReport, NamespaceJson};
use nvme_tools::setup::{self, Host, ProcRoot, SysfsRoot};
use proptest::prelude::*;

fn page() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), IDENTIFY_DATA_SIZE)
}

/// A word of an `nvme-dio` script: the grammar's tokens and random values.
fn script_word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "write",
            "read",
            "compare",
            "fallocate",
            "+",
            "--offset",
            "--length",
            "--input",
            "--output",
            "--file",
            "--pattern",
            "--dsync",
            "--sync",
            "--hipri",
            "--help",
            "-h",
            "0",
            "4k",
            "0x1000",
            "1M",
            "-1",
            "256",
            "99999999999T",
            "a.bin",
            "",
        ])
        .prop_map(String::from),
        any::<u64>().prop_map(|n| n.to_string()),
        "\\PC{0,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn byte_counts_parse_or_name_the_input(s in "\\PC{0,24}") {
        match parse_bytes(&s) {
            Ok(_) => {}
            Err(msg) => {
                let quoted = format!("'{s}'");
                prop_assert!(msg.contains(&quoted), "{}", msg);
            }
        }
    }

    #[test]
    fn byte_counts_with_units_parse_to_their_value(n: u32, unit in prop::sample::select(vec![("", 0u32), ("k", 10), ("K", 10), ("M", 20), ("MiB", 20), ("g", 30), ("T", 40)])) {
        let (suffix, shift) = unit;
        let text = format!("{n}{suffix}");
        let expected = u64::from(n).checked_mul(1 << shift);
        prop_assert_eq!(parse_bytes(&text).ok(), expected);
        prop_assert_eq!(parse_bytes(&format!("{n:#x}")), Ok(u64::from(n)));
    }

    #[test]
    fn scripts_of_grammar_words_parse_or_say_which_step_is_wrong(words in proptest::collection::vec(script_word(), 0..12)) {
        match parse_script(&words) {
            Ok(steps) => {
                prop_assert_eq!(steps.len(), words.split(|w| w == "+").count());
            }
            Err(ScriptError::Help(text)) => prop_assert!(!text.is_empty()),
            Err(ScriptError::Bad(msg)) => {
                prop_assert!(msg.starts_with("step "), "{}", msg);
            }
        }
    }

    #[test]
    fn identify_reports_from_random_pages_render_as_text_and_json(
        ctrl in page(),
        ns in page(),
        nvm in proptest::option::of(page()),
        descriptors in proptest::option::of(page()),
        cap: u64,
        vs: u32,
    ) {
        let id = IdentifyController::parse(&ctrl).expect("a whole page");
        let ns = IdentifyNamespace::parse(&ns).expect("a whole page");
        let nvm = nvm.map(|p| IdentifyNamespaceNvm::parse(&p).expect("a whole page"));
        let ids = descriptors.and_then(|p| NamespaceIds::parse(&p).ok());
        let report = IdentifyReport {
            device: "emu".into(),
            controller: ControllerJson::new(&id, Cap::from_bits(cap), Version::from_bits(vs)),
            namespaces: vec![NamespaceJson::new(1, &ns, ids.as_ref())
                .with_nvm(&ns, nvm.as_ref())
                .with_command_set(CommandSetId::NVM, None)],
        };
        let text = human::render(&report);
        prop_assert!(!text.is_empty());
        let json = serde_json::to_string(&report).expect("the report encodes");
        let back: serde_json::Value = serde_json::from_str(&json).expect("the JSON parses back");
        prop_assert_eq!(back["controller"]["nn"].as_u64(), Some(u64::from(id.nn)));
    }

    #[test]
    fn zone_tables_render_from_random_reports(
        bytes in proptest::collection::vec(any::<u8>(), 64..640),
        namespace_blocks: u64,
    ) {
        if let Ok(page) = nvme::zns::decode_report(&bytes, 0, namespace_blocks) {
            let text = nvme_tools::zns::model::render(page.nr_zones, &page.zones);
            prop_assert_eq!(text.lines().count(), 2 + page.zones.len());
            let json = nvme_tools::zns::model::ZoneReportJson::new(page.nr_zones, &page.zones);
            prop_assert!(serde_json::to_string(&json).is_ok());
        }
    }
}

/// Contents for a `/sys` or `/proc` file: numbers, near-numbers and noise.
fn file_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| format!("{n}\n")),
        any::<u32>().prop_map(|n| format!("{n:#x}\n")),
        prop::sample::select(vec![
            "",
            "\n",
            "-1\n",
            "0x\n",
            "unlimited\n",
            "18446744073709551616\n",
            "0x1_0000\n"
        ])
        .prop_map(String::from),
        "\\PC{0,40}",
    ]
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A fake host whose hugepage counts, PCI ids, limits, capabilities, mounts and
    /// command line hold random text: every reader returns a value or a typed error.
    #[test]
    fn setup_readers_survive_random_sysfs_and_proc_contents(
        texts in proptest::collection::vec(file_text(), 16),
        lines in proptest::collection::vec("\\PC{0,60}", 0..6),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let hp = "sys/kernel/mm/hugepages/hugepages-2048kB";
        let node = "sys/devices/system/node/node0/hugepages/hugepages-2048kB";
        let pci = "sys/bus/pci/devices/0000:01:00.0";
        let files = [
            format!("{hp}/nr_hugepages"),
            format!("{hp}/free_hugepages"),
            format!("{hp}/resv_hugepages"),
            format!("{hp}/surplus_hugepages"),
            format!("{node}/nr_hugepages"),
            format!("{node}/free_hugepages"),
            format!("{pci}/vendor"),
            format!("{pci}/device"),
            format!("{pci}/class"),
            format!("{pci}/numa_node"),
            format!("{pci}/driver_override"),
            "proc/cmdline".to_string(),
            "proc/meminfo".to_string(),
            "proc/self/mountinfo".to_string(),
            "proc/mounts".to_string(),
            "proc/swaps".to_string(),
        ];
        for (rel, text) in files.iter().zip(&texts) {
            write(root, rel, text);
        }
        let noise = lines.join("\n");
        write(root, "proc/self/limits", &format!("Max locked memory {noise}\n"));
        write(root, "proc/self/status", &format!("CapEff:\t{noise}\n"));
        for d in ["sys/kernel/iommu_groups", "sys/class/iommu", "sys/block", "dev"] {
            fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        let host = Host {
            sys: SysfsRoot::new(root.join("sys")),
            proc: ProcRoot::new(root.join("proc")),
            dev: root.join("dev"),
        };
        let results: Vec<Result<(), setup::SetupError>> = vec![
            setup::Status::read(&host).map(|_| ()),
            setup::hugepages::pools(&host).map(|_| ()),
            setup::memlock(&host).map(|_| ()),
            setup::IommuState::read(&host).map(|_| ()),
            host.sys.read_hex("bus/pci/devices/0000:01:00.0/vendor").map(|_| ()),
            host.sys.pci_addresses().map(|_| ()),
            host.proc.mounts().map(|_| ()),
            host.proc.swaps().map(|_| ()),
        ];
        for e in results.into_iter().filter_map(Result::err) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
