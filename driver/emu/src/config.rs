//! Controller configuration and its device-string syntax.
//!
//! | option    | values                              | default     | meaning |
//! |-----------|-------------------------------------|-------------|---------|
//! | `size`    | bytes, suffix `K` `M` `G` `T` (binary) | `1G`     | capacity of each namespace; a multiple of `lba` |
//! | `lba`     | `512`, `4096`                       | `512`       | logical block size in bytes |
//! | `ns`      | `1`..=`1024`                        | `1`         | number of namespaces (NSIDs 1..=ns) |
//! | `vwc`     | `on`, `off`                         | `on`        | a volatile write cache is present and enabled (65536 blocks in 64 sets by LBA; a full set writes its oldest block back, which makes it durable); `off`: no cache, every completed write is durable |
//! | `file`    | a path                              | (RAM)       | back the namespaces by this file (namespace *k* at byte `(k-1)*size`); created if missing, extended to `ns*size` |
//! | `null`    | flag, or `null=on`/`null=off`       | off         | namespaces that move no data: reads leave the buffer untouched, writes are discarded |
//! | `mode`    | `inline`, `threaded`                | `inline`    | `inline`: a doorbell write processes the queue in the writer's thread; `threaded`: a device thread does |
//! | `qpairs`  | `1`..=`4096`                        | `64`        | I/O queue pairs the controller offers (Number of Queues) |
//! | `mqes`    | `1`..=`65535`                       | `1023`      | CAP.MQES: largest queue size minus one |
//! | `dstrd`   | `0`..=`8`                           | `0`         | CAP.DSTRD: doorbell stride is `4 << dstrd` bytes |
//! | `mdts`    | `0`..=`15`                          | `5`         | Maximum Data Transfer Size, a power of two in units of the minimum page size; `0` = no limit |
//! | `mpsmin`  | `0`..=`15`                          | `0`         | CAP.MPSMIN: smallest page size is `4K << mpsmin` |
//! | `mpsmax`  | `mpsmin`..=`15`                     | `4`         | CAP.MPSMAX: largest page size is `4K << mpsmax` |
//! | `to`      | `1`..=`255`                         | `20`        | CAP.TO: ready timeout in units of 500 ms |
//! | `vectors` | `1`..=`2048`                        | `qpairs+1`  | interrupt vectors (MSI-X table size) |
//! | `aerl`    | `0`..=`15`                          | `3`         | Asynchronous Event Request Limit (zero based) |
//! | `serial`  | up to 20 printable ASCII characters | `EMU00001`  | Identify serial number |
//! | `log`     | `on`, `off`                         | `off`       | record every executed command in the command log from the start |
//! | `ms`      | `0`, `8`, `16`, `64`                | `0`         | metadata bytes per logical block of every namespace |
//! | `mset`    | `ext`, `sep`                        | `ext`       | where metadata travels: `ext` after each block's data in the data buffer (extended LBA), `sep` in a separate contiguous buffer at MPTR (0 or unmapped: Data Transfer Error) |
//! | `pi`      | `0`..=`3`                           | `0`         | protection information type reported in DPS (needs `ms` of at least 8); with PRACT the controller generates the tuple on writes (with metadata larger than the tuple, in place of the host's tuple, keeping the other bytes) and, when the metadata is only the tuple, moves data only and strips it on reads; the PRCHK bits check the guard, the application tag under its mask and the reference tag of the host's tuples on writes without PRACT and of the stored ones on reads (End-to-end Guard, Application Tag or Reference Tag Check Error, with the LBA in the Error Information log); as on QEMU's controller, the reference tag check on type 3, or on type 1 with an initial reference tag other than the LBA, is Invalid Protection Information |
//! | `pil`     | `first`, `last`                     | `last`      | where the protection information sits in the metadata |
//! | `fuses`   | `on`, `off`                         | `on`        | Identify FUSES bit 0: the fused Compare and Write is offered and runs atomically; `off`: every fused command fails with Invalid Field in Command, as on QEMU's controller |
//! | `sgl`     | `on`, `off`                         | `on`        | SGL support (Identify SGLS 01b, with metadata SGLs through MPTR): Data Block, Segment and Last Segment descriptors for data and metadata; `off`: SGLS 0 and a command with PSDT other than PRP fails with Invalid Field in Command |
//! | `zoned`   | flag, or `zoned=on`/`zoned=off`     | off         | every namespace is zoned (Zoned Namespace Command Set, CSI 02h): sequential-write-required zones with the state machine, write pointer checks, Zone Append, Zone Management Send/Receive and resource limits of the ZNS specification; CAP.CSS then offers all I/O command sets and the host enables them with CC.CSS 110b (with CC.CSS 000b the zone commands are Invalid Command Opcode, as on QEMU's controller) |
//! | `zone_size` | bytes, suffix `K` `M` `G` (binary) | `1M`     | zone size (ZSZE); a multiple of `lba` that divides `size` |
//! | `zone_cap` | bytes, suffix `K` `M` `G` (binary) | `zone_size` | zone capacity (ZCAP): writable bytes of each zone, a multiple of `lba`, at most `zone_size` |
//! | `max_open` | `0`..=zones                        | `0`         | Maximum Open Resources (MOR); `0` = no limit |
//! | `max_active` | `0`..=zones                      | `0`         | Maximum Active Resources (MAR), at least `max_open` when both are set; `0` = no limit |
//! | `guard`   | `crc16`, `crc64`                    | `crc16`     | protection information format: `crc16` the 8-byte tuple with a CRC-16/T10-DIF guard, `crc64` the 16-byte tuple with a CRC-64/NVME guard and a 48-bit reference tag (needs `ms` of at least 16 with `pi`); reported in the NVM Command Set Identify Namespace (CNS 05h) |
//! | `hostile` | a seed, `0`..=`2^64-1`             | off         | the hostile device: every answer (completions, Identify pages, register reads, interrupts, DMA) may be a lie picked by a generator with this seed; see [`crate::hostile`] |
//! | `hostile_rate` | `0`..=`1000`                   | `50`        | probability of a lie per answer, per mille (needs `hostile`) |
//!
//! Examples: `emu`, `emu:size=4G,lba=4096,vwc=off`, `emu:null,mode=threaded,qpairs=8`,
//! `emu:file=disk.img,size=64M,ns=2`, `emu:lba=4096,ms=64,mset=sep,pi=1,pil=first`,
//! `emu:zoned,size=64M,zone_size=1M,zone_cap=768K,max_open=4,max_active=8`.
//!
//! `size` counts data bytes; metadata is stored beside each block's data, so a RAM or
//! file backend holds `size / lba * (lba + ms)` bytes per namespace.

use std::path::PathBuf;
use std::str::FromStr;

use crate::error::EmuError;

/// Every option name [`EmuConfig::from_str`] accepts.
const ACCEPTED: &str =
    "size, lba, ns, vwc, file, null, mode, qpairs, mqes, dstrd, mdts, mpsmin, mpsmax, to, vectors, aerl, serial, log, ms, mset, pi, pil, fuses, sgl, guard, zoned, zone_size, zone_cap, max_open, max_active, hostile, hostile_rate";

/// Where namespace data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKind {
    /// Sparse RAM, allocated on first write.
    Ram,
    /// A file, accessed with `pread`/`pwrite`.
    File(PathBuf),
    /// No data at all.
    Null,
}

/// How commands are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// A doorbell write processes the queue in the writing thread.
    Inline,
    /// A device thread processes queues after doorbell writes.
    Threaded,
}

/// The LBA format of every namespace beyond its data size: metadata and protection
/// information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetadataFormat {
    /// Metadata bytes per block (0, 8, 16 or 64).
    pub size: u16,
    /// Metadata travels in a separate buffer (MPTR) instead of after each block's data.
    pub separate: bool,
    /// Protection information type (0 = none, 1 to 3).
    pub pi: u8,
    /// The protection information is in the first bytes of the metadata, not the last.
    pub pi_first: bool,
    /// The 16-byte tuple with a 64-bit guard instead of the 8-byte one.
    pub guard64: bool,
}

impl MetadataFormat {
    /// Bytes of one protection information tuple in this format.
    pub fn pi_tuple_size(&self) -> usize {
        if self.guard64 {
            nvme_spec::pi::PI16_TUPLE_SIZE
        } else {
            nvme_spec::pi::PI_TUPLE_SIZE
        }
    }
}

/// Everything that shapes an emulated controller. See the module documentation for the
/// device-string options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmuConfig {
    /// Capacity of each namespace in bytes.
    pub ns_size: u64,
    /// Logical block size in bytes (512 or 4096).
    pub lba_size: u32,
    /// Number of namespaces.
    pub namespaces: u32,
    /// Whether a volatile write cache is present (and initially enabled).
    pub vwc: bool,
    /// Where data lives.
    pub backend: BackendKind,
    /// Execution mode.
    pub mode: ExecMode,
    /// Number of I/O queue pairs offered.
    pub qpairs: u16,
    /// CAP.MQES (zero based).
    pub mqes: u16,
    /// CAP.DSTRD.
    pub dstrd: u8,
    /// Identify MDTS (0 = unlimited).
    pub mdts: u8,
    /// CAP.MPSMIN.
    pub mpsmin: u8,
    /// CAP.MPSMAX.
    pub mpsmax: u8,
    /// CAP.TO in 500 ms units.
    pub timeout: u8,
    /// Interrupt vectors offered.
    pub vectors: u16,
    /// Asynchronous Event Request Limit (zero based).
    pub aerl: u8,
    /// Identify serial number.
    pub serial: String,
    /// Whether the command log starts enabled.
    pub log: bool,
    /// Metadata and protection information of every namespace.
    pub metadata: MetadataFormat,
    /// Whether the fused Compare and Write is offered (Identify FUSES bit 0).
    pub fuses: bool,
    /// Whether SGLs are supported for data and metadata (Identify SGLS).
    pub sgl: bool,
    /// The zone geometry when every namespace is zoned.
    pub zoned: Option<ZonedConfig>,
    /// The hostile device's seed and rate, when it lies.
    pub hostile: Option<crate::hostile::HostileConfig>,
    /// Command Retry Delay Times CRDT1..3 of Identify Controller, in 100 ms units.
    pub crdt: [u16; 3],
}

/// Zone geometry and resource limits of a zoned namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZonedConfig {
    /// Zone size in bytes.
    pub zone_size: u64,
    /// Zone capacity in bytes (at most `zone_size`).
    pub zone_cap: u64,
    /// Most zones open at once; 0 for no limit.
    pub max_open: u32,
    /// Most zones active (open or closed) at once; 0 for no limit.
    pub max_active: u32,
}

impl Default for ZonedConfig {
    fn default() -> Self {
        Self {
            zone_size: 1 << 20,
            zone_cap: 1 << 20,
            max_open: 0,
            max_active: 0,
        }
    }
}

/// Most zones one namespace may have (bounds the zone table's memory).
pub const MAX_ZONES: u64 = 1 << 20;

impl Default for EmuConfig {
    fn default() -> Self {
        Self {
            ns_size: 1 << 30,
            lba_size: 512,
            namespaces: 1,
            vwc: true,
            backend: BackendKind::Ram,
            mode: ExecMode::Inline,
            qpairs: 64,
            mqes: 1023,
            dstrd: 0,
            mdts: 5,
            mpsmin: 0,
            mpsmax: 4,
            timeout: 20,
            vectors: 65,
            aerl: 3,
            serial: "EMU00001".to_string(),
            log: false,
            metadata: MetadataFormat::default(),
            fuses: true,
            sgl: true,
            zoned: None,
            hostile: None,
            crdt: [0; 3],
        }
    }
}

impl EmuConfig {
    /// Number of logical blocks in each namespace.
    pub fn blocks_per_namespace(&self) -> u64 {
        self.ns_size / u64::from(self.lba_size)
    }

    /// Bytes a backend stores per namespace: every block's data and metadata.
    pub fn stored_bytes_per_namespace(&self) -> u64 {
        self.blocks_per_namespace() * (u64::from(self.lba_size) + u64::from(self.metadata.size))
    }

    /// Largest transfer in bytes, or `None` when unlimited.
    pub fn max_transfer_bytes(&self) -> Option<u64> {
        (self.mdts != 0).then(|| (4096u64 << self.mpsmin) << self.mdts)
    }

    /// Checks cross-option rules (the parser calls this; call it after building a
    /// config by hand).
    pub fn validate(&self) -> Result<(), EmuError> {
        if self.lba_size != 512 && self.lba_size != 4096 {
            return Err(invalid("lba", self.lba_size.to_string(), "512 or 4096"));
        }
        if self.ns_size == 0 || self.ns_size % u64::from(self.lba_size) != 0 {
            return Err(EmuError::Conflict {
                reason: "size must be a non-zero multiple of the logical block size (lba)",
            });
        }
        if self.namespaces == 0 || self.namespaces > 1024 {
            return Err(invalid("ns", self.namespaces.to_string(), "1..=1024"));
        }
        if self.qpairs == 0 || self.qpairs > 4096 {
            return Err(invalid("qpairs", self.qpairs.to_string(), "1..=4096"));
        }
        if self.mqes == 0 {
            return Err(invalid("mqes", "0".into(), "1..=65535"));
        }
        if self.dstrd > 8 {
            return Err(invalid("dstrd", self.dstrd.to_string(), "0..=8"));
        }
        if self.mdts > 15 {
            return Err(invalid("mdts", self.mdts.to_string(), "0..=15"));
        }
        if self.mpsmin > 15 {
            return Err(invalid("mpsmin", self.mpsmin.to_string(), "0..=15"));
        }
        if self.mpsmax > 15 || self.mpsmax < self.mpsmin {
            return Err(invalid("mpsmax", self.mpsmax.to_string(), "mpsmin..=15"));
        }
        if self.timeout == 0 {
            return Err(invalid("to", "0".into(), "1..=255"));
        }
        if self.vectors == 0 || self.vectors > 2048 {
            return Err(invalid("vectors", self.vectors.to_string(), "1..=2048"));
        }
        if !matches!(self.metadata.size, 0 | 8 | 16 | 64) {
            return Err(invalid(
                "ms",
                self.metadata.size.to_string(),
                "0, 8, 16 or 64",
            ));
        }
        // Data and metadata of every namespace must be addressable by a u64 (a RAM
        // backend's length, a file backend's offsets).
        let per_block = u64::from(self.lba_size) + u64::from(self.metadata.size);
        if self
            .blocks_per_namespace()
            .checked_mul(per_block)
            .and_then(|bytes| bytes.checked_mul(u64::from(self.namespaces)))
            .is_none()
        {
            return Err(EmuError::Conflict {
                reason:
                    "size times ns, with metadata (ms), exceeds 2^64 bytes: choose a smaller size",
            });
        }
        if self.metadata.pi > 3 {
            return Err(invalid("pi", self.metadata.pi.to_string(), "0..=3"));
        }
        if self.metadata.pi != 0 && self.metadata.size < 8 {
            return Err(EmuError::Conflict {
                reason: "protection information (pi) needs at least 8 bytes of metadata (ms)",
            });
        }
        if self.metadata.pi != 0 && self.metadata.guard64 && self.metadata.size < 16 {
            return Err(EmuError::Conflict {
                reason: "the 16-byte protection information tuple (guard=crc64) needs at least 16 bytes of metadata (ms)",
            });
        }
        if let Some(z) = &self.zoned {
            let lba = u64::from(self.lba_size);
            if z.zone_size == 0 || z.zone_size % lba != 0 || self.ns_size % z.zone_size != 0 {
                return Err(EmuError::Conflict {
                    reason: "zone_size must be a non-zero multiple of the logical block size (lba) that divides size",
                });
            }
            if z.zone_cap == 0 || z.zone_cap % lba != 0 || z.zone_cap > z.zone_size {
                return Err(EmuError::Conflict {
                    reason: "zone_cap must be a non-zero multiple of the logical block size (lba), at most zone_size",
                });
            }
            let zones = self.ns_size / z.zone_size;
            if zones > MAX_ZONES {
                return Err(EmuError::Conflict {
                    reason: "a zoned namespace holds at most 1048576 zones: raise zone_size",
                });
            }
            if u64::from(z.max_open) > zones || u64::from(z.max_active) > zones {
                return Err(EmuError::Conflict {
                    reason:
                        "max_open and max_active are at most the number of zones (size / zone_size)",
                });
            }
            if z.max_active != 0 && z.max_open > z.max_active {
                return Err(EmuError::Conflict {
                    reason: "max_open must not exceed max_active (an open zone is active)",
                });
            }
            if self.metadata.pi != 0 {
                return Err(EmuError::Conflict {
                    reason: "zoned namespaces do not support protection information (pi) here",
                });
            }
        }
        if self.aerl > 15 {
            return Err(invalid("aerl", self.aerl.to_string(), "0..=15"));
        }
        if self.serial.is_empty()
            || self.serial.len() > 20
            || !self
                .serial
                .bytes()
                .all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(invalid(
                "serial",
                self.serial.clone(),
                "1 to 20 printable ASCII characters",
            ));
        }
        Ok(())
    }
}

fn invalid(option: &'static str, value: String, expected: &'static str) -> EmuError {
    EmuError::InvalidValue {
        option,
        value,
        expected,
    }
}

pub use hugepages::parse_size;

fn parse_num<T: FromStr + PartialOrd + Copy>(
    option: &'static str,
    value: &str,
    lo: T,
    hi: T,
    expected: &'static str,
) -> Result<T, EmuError> {
    match value.parse::<T>() {
        Ok(v) if v >= lo && v <= hi => Ok(v),
        _ => Err(invalid(option, value.to_string(), expected)),
    }
}

fn parse_switch(option: &'static str, value: &str) -> Result<bool, EmuError> {
    match value {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(invalid(option, value.to_string(), "on or off")),
    }
}

impl FromStr for EmuConfig {
    type Err = EmuError;

    /// Parses `emu` or `emu:OPTION=VALUE,...` (see the module documentation).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = match s.strip_prefix("emu") {
            Some("") => return Ok(Self::default()),
            Some(rest) => match rest.strip_prefix(':') {
                Some(rest) => rest,
                None => {
                    return Err(EmuError::NotEmu {
                        name: s.to_string(),
                    })
                }
            },
            None => {
                return Err(EmuError::NotEmu {
                    name: s.to_string(),
                })
            }
        };
        let mut cfg = Self::default();
        let mut vectors_set = false;
        let mut zoned: Option<ZonedConfig> = None;
        let mut cap_set = false;
        let mut hostile_rate = None;
        for item in rest.split(',').filter(|i| !i.is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item.trim(), None),
            };
            let need = |option: &'static str, expected: &'static str| {
                value.ok_or_else(|| invalid(option, String::new(), expected))
            };
            match key {
                "size" => {
                    let v = need("size", "a size such as 512M, 4G or 1T")?;
                    cfg.ns_size = parse_size(v).filter(|n| *n > 0).ok_or_else(|| {
                        invalid("size", v.to_string(), "a size such as 512M, 4G or 1T")
                    })?;
                }
                "lba" => {
                    let v = need("lba", "512 or 4096")?;
                    cfg.lba_size = match parse_size(v) {
                        Some(512) => 512,
                        Some(4096) => 4096,
                        _ => return Err(invalid("lba", v.to_string(), "512 or 4096")),
                    };
                }
                "ns" => {
                    cfg.namespaces = parse_num("ns", need("ns", "1..=1024")?, 1, 1024, "1..=1024")?
                }
                "vwc" => cfg.vwc = parse_switch("vwc", need("vwc", "on or off")?)?,
                "file" => {
                    let v = need("file", "a file path")?;
                    if v.is_empty() {
                        return Err(invalid("file", String::new(), "a file path"));
                    }
                    if cfg.backend == BackendKind::Null {
                        return Err(EmuError::Conflict {
                            reason: "`null` and `file` exclude each other",
                        });
                    }
                    cfg.backend = BackendKind::File(PathBuf::from(v));
                }
                "null" => {
                    let on = match value {
                        None => true,
                        Some(v) => parse_switch("null", v)?,
                    };
                    if on {
                        if matches!(cfg.backend, BackendKind::File(_)) {
                            return Err(EmuError::Conflict {
                                reason: "`null` and `file` exclude each other",
                            });
                        }
                        cfg.backend = BackendKind::Null;
                    } else if cfg.backend == BackendKind::Null {
                        cfg.backend = BackendKind::Ram;
                    }
                }
                "mode" => {
                    cfg.mode = match need("mode", "inline or threaded")? {
                        "inline" => ExecMode::Inline,
                        "threaded" => ExecMode::Threaded,
                        v => return Err(invalid("mode", v.to_string(), "inline or threaded")),
                    }
                }
                "qpairs" => {
                    cfg.qpairs =
                        parse_num("qpairs", need("qpairs", "1..=4096")?, 1, 4096, "1..=4096")?
                }
                "mqes" => {
                    cfg.mqes = parse_num("mqes", need("mqes", "1..=65535")?, 1, 65535, "1..=65535")?
                }
                "crdt" => {
                    const EXPECTED: &str = "three delays in 100 ms units, such as 1:5:10";
                    let v = need("crdt", EXPECTED)?;
                    let parts: Vec<&str> = v.split(':').collect();
                    if parts.len() != 3 {
                        return Err(invalid("crdt", v.to_string(), EXPECTED));
                    }
                    for (slot, part) in cfg.crdt.iter_mut().zip(parts) {
                        *slot = parse_num("crdt", part, 0, u16::MAX, EXPECTED)?;
                    }
                }
                "dstrd" => cfg.dstrd = parse_num("dstrd", need("dstrd", "0..=8")?, 0, 8, "0..=8")?,
                "mdts" => cfg.mdts = parse_num("mdts", need("mdts", "0..=15")?, 0, 15, "0..=15")?,
                "mpsmin" => {
                    cfg.mpsmin = parse_num("mpsmin", need("mpsmin", "0..=15")?, 0, 15, "0..=15")?
                }
                "mpsmax" => {
                    cfg.mpsmax = parse_num("mpsmax", need("mpsmax", "0..=15")?, 0, 15, "0..=15")?
                }
                "to" => cfg.timeout = parse_num("to", need("to", "1..=255")?, 1, 255, "1..=255")?,
                "vectors" => {
                    cfg.vectors =
                        parse_num("vectors", need("vectors", "1..=2048")?, 1, 2048, "1..=2048")?;
                    vectors_set = true;
                }
                "aerl" => cfg.aerl = parse_num("aerl", need("aerl", "0..=15")?, 0, 15, "0..=15")?,
                "serial" => {
                    cfg.serial = need("serial", "1 to 20 printable ASCII characters")?.to_string()
                }
                "log" => cfg.log = parse_switch("log", need("log", "on or off")?)?,
                "ms" => {
                    let v = need("ms", "0, 8, 16 or 64")?;
                    cfg.metadata.size = match v {
                        "0" => 0,
                        "8" => 8,
                        "16" => 16,
                        "64" => 64,
                        _ => return Err(invalid("ms", v.to_string(), "0, 8, 16 or 64")),
                    };
                }
                "mset" => {
                    cfg.metadata.separate = match need("mset", "ext or sep")? {
                        "ext" => false,
                        "sep" => true,
                        v => return Err(invalid("mset", v.to_string(), "ext or sep")),
                    }
                }
                "pi" => cfg.metadata.pi = parse_num("pi", need("pi", "0..=3")?, 0, 3, "0..=3")?,
                "pil" => {
                    cfg.metadata.pi_first = match need("pil", "first or last")? {
                        "first" => true,
                        "last" => false,
                        v => return Err(invalid("pil", v.to_string(), "first or last")),
                    }
                }
                "fuses" => cfg.fuses = parse_switch("fuses", need("fuses", "on or off")?)?,
                "sgl" => cfg.sgl = parse_switch("sgl", need("sgl", "on or off")?)?,
                "guard" => {
                    cfg.metadata.guard64 = match need("guard", "crc16 or crc64")? {
                        "crc16" => false,
                        "crc64" => true,
                        v => return Err(invalid("guard", v.to_string(), "crc16 or crc64")),
                    }
                }
                "zoned" => {
                    let on = match value {
                        None => true,
                        Some(v) => parse_switch("zoned", v)?,
                    };
                    cfg.zoned = on.then(|| cfg.zoned.unwrap_or_default());
                }
                "zone_size" | "zone_cap" | "max_open" | "max_active" => {
                    let z = zoned.get_or_insert_with(ZonedConfig::default);
                    match key {
                        "zone_size" => {
                            let v = need("zone_size", "a size such as 1M")?;
                            z.zone_size = parse_size(v).ok_or_else(|| {
                                invalid("zone_size", v.to_string(), "a size such as 1M")
                            })?;
                        }
                        "zone_cap" => {
                            let v = need("zone_cap", "a size such as 768K")?;
                            cap_set = true;
                            z.zone_cap = parse_size(v).ok_or_else(|| {
                                invalid("zone_cap", v.to_string(), "a size such as 768K")
                            })?;
                        }
                        "max_open" => {
                            z.max_open = parse_num(
                                "max_open",
                                need("max_open", "a zone count")?,
                                0,
                                u32::MAX,
                                "a zone count",
                            )?;
                        }
                        _ => {
                            z.max_active = parse_num(
                                "max_active",
                                need("max_active", "a zone count")?,
                                0,
                                u32::MAX,
                                "a zone count",
                            )?;
                        }
                    }
                }
                "hostile" => {
                    let seed = parse_num(
                        "hostile",
                        need("hostile", "a seed, 0..=18446744073709551615")?,
                        0,
                        u64::MAX,
                        "a seed, 0..=18446744073709551615",
                    )?;
                    cfg.hostile = Some(crate::hostile::HostileConfig::new(seed));
                }
                "hostile_rate" => {
                    hostile_rate = Some(parse_num(
                        "hostile_rate",
                        need("hostile_rate", "0..=1000")?,
                        0,
                        1000,
                        "0..=1000",
                    )?);
                }
                other => {
                    return Err(EmuError::UnknownOption {
                        option: other.to_string(),
                        accepted: ACCEPTED,
                    })
                }
            }
        }
        if let Some(rate) = hostile_rate {
            match &mut cfg.hostile {
                Some(h) => h.rate_permille = rate,
                None => {
                    return Err(EmuError::Conflict {
                        reason: "hostile_rate needs the hostile option (its seed)",
                    })
                }
            }
        }
        if !vectors_set {
            cfg.vectors = (cfg.qpairs + 1).min(2048);
        }
        if let Some(mut z) = zoned {
            if !cap_set {
                z.zone_cap = z.zone_size;
            }
            if cfg.zoned.is_none() {
                return Err(EmuError::Conflict {
                    reason: "zone_size, zone_cap, max_open and max_active need the zoned option",
                });
            }
            cfg.zoned = Some(z);
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_suffixes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("2T"), Some(2 << 40));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn metadata_options_select_the_format() {
        let cfg: EmuConfig = "emu:lba=4096,ms=64,mset=sep,pi=1,pil=first"
            .parse()
            .unwrap();
        assert_eq!(
            cfg.metadata,
            MetadataFormat {
                size: 64,
                separate: true,
                pi: 1,
                pi_first: true,
                guard64: false,
            }
        );
        assert_eq!(cfg.stored_bytes_per_namespace(), (1 << 30) / 4096 * 4160);
        let cfg: EmuConfig = "emu:ms=16,pi=2,guard=crc64".parse().unwrap();
        assert!(cfg.metadata.guard64);
        assert_eq!(cfg.metadata.pi_tuple_size(), 16);
        assert!("emu:ms=8,pi=1,guard=crc64".parse::<EmuConfig>().is_err());
        assert!("emu:ms=8,guard=crc32".parse::<EmuConfig>().is_err());
        assert!("emu:ms=12".parse::<EmuConfig>().is_err());
        assert!("emu:pi=1".parse::<EmuConfig>().is_err());
        assert!("emu:mset=both".parse::<EmuConfig>().is_err());
    }

    #[test]
    fn sgl_support_is_on_by_default_and_can_be_turned_off() {
        assert!(EmuConfig::default().sgl);
        assert!(!"emu:sgl=off".parse::<EmuConfig>().unwrap().sgl);
        assert!("emu:sgl=on".parse::<EmuConfig>().unwrap().sgl);
        assert!("emu:sgl=maybe".parse::<EmuConfig>().is_err());
    }
}
