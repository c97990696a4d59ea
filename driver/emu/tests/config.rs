//! Device-string parsing.

use nvme_emu::{BackendKind, EmuConfig, EmuController, EmuError, ExecMode};

fn err(s: &str) -> EmuError {
    s.parse::<EmuConfig>().expect_err(s)
}

#[test]
fn bare_emu_is_a_1g_ram_namespace_with_512_byte_blocks_cache_on_inline() {
    let c: EmuConfig = "emu".parse().unwrap();
    assert_eq!(c.ns_size, 1 << 30);
    assert_eq!(c.lba_size, 512);
    assert!(c.vwc);
    assert_eq!(c.mode, ExecMode::Inline);
    assert_eq!(c.backend, BackendKind::Ram);
    assert_eq!(c.namespaces, 1);
    assert_eq!(c, EmuConfig::default());
}

#[test]
fn every_option_is_parsed() {
    let c: EmuConfig = "emu:size=4G,lba=4096,vwc=off,file=/x/disk.img,ns=2,mdts=6,qpairs=16,mode=threaded,mqes=255,dstrd=1,mpsmin=0,mpsmax=3,to=9,vectors=8,aerl=2,serial=SN9,log=on"
        .parse()
        .unwrap();
    assert_eq!(c.ns_size, 4 << 30);
    assert_eq!(c.lba_size, 4096);
    assert!(!c.vwc);
    assert_eq!(c.backend, BackendKind::File("/x/disk.img".into()));
    assert_eq!(c.namespaces, 2);
    assert_eq!(c.mdts, 6);
    assert_eq!(c.qpairs, 16);
    assert_eq!(c.mode, ExecMode::Threaded);
    assert_eq!(c.mqes, 255);
    assert_eq!(c.dstrd, 1);
    assert_eq!(c.mpsmax, 3);
    assert_eq!(c.timeout, 9);
    assert_eq!(c.vectors, 8);
    assert_eq!(c.aerl, 2);
    assert_eq!(c.serial, "SN9");
    assert!(c.log);
    let n: EmuConfig = "emu:null,qpairs=3".parse().unwrap();
    assert_eq!(n.backend, BackendKind::Null);
    assert_eq!(n.vectors, 4, "vectors default to qpairs + 1");
}

#[test]
fn sizes_take_binary_suffixes() {
    for (s, want) in [
        ("512K", 512 << 10),
        ("64M", 64 << 20),
        ("2g", 2 << 30),
        ("1T", 1 << 40),
        ("8192", 8192),
    ] {
        let c: EmuConfig = format!("emu:size={s}").parse().unwrap();
        assert_eq!(c.ns_size, want, "{s}");
    }
}

#[test]
fn unknown_option_names_the_option_and_lists_the_accepted_ones() {
    let e = err("emu:sise=4G");
    let text = e.to_string();
    assert!(matches!(e, EmuError::UnknownOption { ref option, .. } if option == "sise"));
    assert!(
        text.contains("sise") && text.contains("size") && text.contains("mode"),
        "{text}"
    );
}

#[test]
fn bad_values_name_the_option_and_the_accepted_values() {
    for (s, option) in [
        ("emu:lba=1024", "lba"),
        ("emu:size=lots", "size"),
        ("emu:size=0", "size"),
        ("emu:mode=fast", "mode"),
        ("emu:vwc=maybe", "vwc"),
        ("emu:ns=0", "ns"),
        ("emu:qpairs=0", "qpairs"),
        ("emu:mqes=0", "mqes"),
        ("emu:mqes=70000", "mqes"),
        ("emu:dstrd=9", "dstrd"),
        ("emu:mdts=16", "mdts"),
        ("emu:to=0", "to"),
        ("emu:mpsmin=2,mpsmax=1", "mpsmax"),
        ("emu:size", "size"),
        ("emu:serial=", "serial"),
    ] {
        match err(s) {
            EmuError::InvalidValue {
                option: o,
                expected,
                ..
            } => {
                assert_eq!(o, option, "{s}");
                assert!(!expected.is_empty());
            }
            other => panic!("{s}: unexpected {other}"),
        }
    }
    let text = err("emu:lba=1024").to_string();
    assert!(
        text.contains("lba") && text.contains("512 or 4096"),
        "{text}"
    );
}

#[test]
fn conflicting_options_are_rejected() {
    assert!(matches!(err("emu:null,file=/x"), EmuError::Conflict { .. }));
    assert!(matches!(err("emu:file=/x,null"), EmuError::Conflict { .. }));
    assert!(matches!(
        err("emu:size=1000,lba=512"),
        EmuError::Conflict { .. }
    ));
}

#[test]
fn non_emu_names_are_rejected() {
    assert!(matches!(err("0000:01:00.0"), EmuError::NotEmu { .. }));
    assert!(matches!(err("emulator"), EmuError::NotEmu { .. }));
}

#[test]
fn unopenable_backing_file_is_a_file_error() {
    let e = EmuController::from_name("emu:file=/nonexistent-dir/x/disk.img").unwrap_err();
    assert!(matches!(e, EmuError::File { .. }));
    assert!(e.to_string().contains("/nonexistent-dir/x/disk.img"));
}
