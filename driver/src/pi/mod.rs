//! End-to-end protection information on the host side (NVM Command Set Specification
//! 1.0, section 5.2): a namespace's [`Protection`] layout, host-generated tuples for
//! writes ([`generate`]) and their check on reads ([`verify`]), and which check failed
//! ([`PiCheck`]) when the host or the controller finds a mismatch.
//!
//! Three ways to use protection information, from simplest:
//! * [`IoFlags::PRACT`](crate::IoFlags::PRACT): the controller generates the tuple on
//!   writes and checks and strips it on reads.
//! * Host-generated: [`generate`] fills each block's tuple in the write's buffers, the
//!   write sets [`IoFlags::PRCHK`](crate::IoFlags::PRCHK) so the controller checks it on
//!   the way in, reads set it too and [`verify`] checks what came back.
//! * Neither: the tuples are ordinary metadata the caller fills.
//!
//! For protection types 1 and 2 the queue pair fills the command's expected initial
//! reference tag from the starting LBA, as Linux's `nvme_setup_rw` does, unless
//! [`IoOptions::ref_tag`](crate::IoOptions::ref_tag) overrides it; the application tag
//! and its mask come from [`IoOptions`](crate::IoOptions).

mod command;
mod tuples;

pub(crate) use command::{command_error, fill_command};
pub use tuples::{generate, verify};

use std::fmt;

use crate::namespace::Namespace;
use crate::spec::identify::{MetadataPlacement, PiLocation, ProtectionType};
use crate::spec::pi::{PiFormat, PI16_STORAGE_REF_BITS};
use crate::spec::status::MediaStatus;
use crate::spec::{Status, StatusCodeType};
use crate::Error;

/// Which field of a protection information tuple failed its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiCheck {
    /// The guard (CRC of the block's data).
    Guard,
    /// The application tag (compared under the mask).
    ApplicationTag,
    /// The reference tag.
    ReferenceTag,
}

impl PiCheck {
    /// The check an end-to-end error status reports (SCT 2h, SC 82h to 84h).
    pub fn from_status(status: Status) -> Option<Self> {
        if status.sct() != StatusCodeType::MediaAndDataIntegrity {
            return None;
        }
        match MediaStatus::from_code(status.sc())? {
            MediaStatus::EndToEndGuardCheckError => Some(Self::Guard),
            MediaStatus::EndToEndApplicationTagCheckError => Some(Self::ApplicationTag),
            MediaStatus::EndToEndReferenceTagCheckError => Some(Self::ReferenceTag),
            _ => None,
        }
    }

    /// What a person can do about a mismatch of this field.
    pub fn advice(self) -> &'static str {
        match self {
            Self::Guard => {
                "the block's data no longer matches the guard it was written with: it is corrupt, or was written without valid protection information; rewrite it, or read it without PRCHK_GUARD to recover the data"
            }
            Self::ApplicationTag => {
                "the block's application tag differs from the expected one under the mask: pass the tag it was written with in IoOptions::app_tag (and IoOptions::app_tag_mask), or clear PRCHK_APP"
            }
            Self::ReferenceTag => {
                "the block's reference tag differs from the expected one (type 1: the LBA's low bits; type 2: the initial tag plus the block's index; type 3: the initial tag): pass the initial tag it was written with in IoOptions::ref_tag, or clear PRCHK_REF"
            }
        }
    }
}

impl fmt::Display for PiCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Guard => "guard",
            Self::ApplicationTag => "application tag",
            Self::ReferenceTag => "reference tag",
        })
    }
}

/// How a namespace protects its blocks: where each block's tuple sits and what it
/// holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protection {
    /// Protection type 1, 2 or 3.
    pub pi_type: ProtectionType,
    /// The tuple format: [`PiFormat::Guard16`] (8-byte tuple) or
    /// [`PiFormat::Guard64`] (16-byte tuple).
    pub guard: PiFormat,
    /// Whether the tuple is the first or the last bytes of the metadata.
    pub location: PiLocation,
    /// Storage Tag Size: the upper bits of the 16-byte tuple's 48-bit tag that are
    /// not reference tag (always 0 for the 8-byte tuple).
    pub storage_tag_bits: u8,
    /// Data bytes per block.
    pub data_size: u32,
    /// Metadata bytes per block (the tuple and any bytes beside it).
    pub metadata_size: u16,
    /// Whether the metadata follows each block's data or travels in its own buffer.
    pub placement: MetadataPlacement,
}

impl Protection {
    /// The protection of namespace `ns`, `None` when it has none. An inconsistent
    /// format (a reserved guard format, metadata too small for the tuple) is
    /// [`Error::UnusableFormat`]; one this driver cannot generate or check (the 32-bit
    /// guard, a storage tag in the 8-byte tuple) is [`Error::UnsupportedProtection`].
    pub fn of(ns: &Namespace) -> Result<Option<Self>, Error> {
        let nsid = ns.nsid;
        let f = ns
            .identify
            .format()
            .map_err(|_| Error::UnusableFormat { nsid })?;
        if !f.protection.is_enabled() {
            return Ok(None);
        }
        let elbaf = match &ns.nvm {
            Some(nvm) => Some(
                nvm.format(f.index)
                    .map_err(|_| Error::UnusableFormat { nsid })?,
            ),
            None => None,
        };
        let guard = match elbaf {
            Some(e) => e.pi_format().map_err(|_| Error::UnusableFormat { nsid })?,
            None => PiFormat::Guard16,
        };
        let sts = elbaf.map_or(0, |e| e.sts());
        let unsupported = |detail: &'static str| Error::UnsupportedProtection { nsid, detail };
        match guard {
            PiFormat::Guard32 => return Err(unsupported("the 32-bit guard format")),
            PiFormat::Guard16 if sts != 0 => {
                return Err(unsupported("storage tags in the 8-byte tuple"))
            }
            PiFormat::Guard64 if u32::from(sts) > PI16_STORAGE_REF_BITS => {
                return Err(unsupported("a storage tag wider than the 48-bit tag field"))
            }
            _ => {}
        }
        if usize::from(f.metadata_size) < guard.tuple_size() {
            return Err(Error::UnusableFormat { nsid });
        }
        Ok(Some(Self {
            pi_type: f.protection,
            guard,
            location: f.pi_location,
            storage_tag_bits: sts,
            data_size: f.data_size,
            metadata_size: f.metadata_size,
            placement: f.placement,
        }))
    }

    /// Bytes of one tuple: 8 or 16.
    pub const fn tuple_size(&self) -> usize {
        self.guard.tuple_size()
    }

    /// Byte offset of the tuple within a block's metadata.
    pub const fn tuple_offset(&self) -> usize {
        match self.location {
            PiLocation::First => 0,
            PiLocation::Last => self.metadata_size as usize - self.tuple_size(),
        }
    }

    /// The PRCHK checks a command on this namespace can ask the controller for: the
    /// guard and the application tag always, the reference tag for types 1 and 2 only.
    /// Type 3 defines no reference tag to check: controllers (QEMU's among them) fail a
    /// type 3 command that asks for it with Invalid Protection Information, and Linux
    /// never asks (`nvme_setup_rw`).
    pub const fn checks(&self) -> crate::queue::IoFlags {
        match self.pi_type {
            ProtectionType::Type1 | ProtectionType::Type2 => crate::queue::IoFlags::PRCHK,
            ProtectionType::None | ProtectionType::Type3 => {
                crate::queue::IoFlags::PRCHK_GUARD.union(crate::queue::IoFlags::PRCHK_APP)
            }
        }
    }

    /// Whether the metadata is nothing but the tuple (so PRACT moves no metadata).
    pub const fn is_pi_only(&self) -> bool {
        self.metadata_size as usize == self.tuple_size()
    }

    /// Bytes per block in the data buffer: data plus metadata for extended LBAs.
    pub const fn data_buffer_block_size(&self) -> usize {
        match self.placement {
            MetadataPlacement::Extended => self.data_size as usize + self.metadata_size as usize,
            MetadataPlacement::None | MetadataPlacement::Separate => self.data_size as usize,
        }
    }

    /// Bytes per block in the separate metadata buffer (0 for extended LBAs).
    pub const fn metadata_buffer_block_size(&self) -> usize {
        match self.placement {
            MetadataPlacement::Separate => self.metadata_size as usize,
            MetadataPlacement::None | MetadataPlacement::Extended => 0,
        }
    }

    /// Bits of the reference tag: 32 in the 8-byte tuple, 48 less the storage tag in
    /// the 16-byte one.
    pub const fn ref_tag_bits(&self) -> u32 {
        match self.guard {
            PiFormat::Guard16 => 32,
            PiFormat::Guard32 | PiFormat::Guard64 => {
                PI16_STORAGE_REF_BITS - self.storage_tag_bits as u32
            }
        }
    }

    /// The reference tag values wrap at this mask.
    pub const fn ref_tag_mask(&self) -> u64 {
        (1u64 << self.ref_tag_bits()) - 1
    }

    /// The command's initial reference tag: `given`, or for types 1 and 2 the starting
    /// LBA's low bits, for type 3 zero.
    pub const fn initial_ref_tag(&self, slba: u64, given: Option<u64>) -> u64 {
        let tag = match given {
            Some(t) => t,
            None => match self.pi_type {
                ProtectionType::Type1 | ProtectionType::Type2 => slba,
                ProtectionType::None | ProtectionType::Type3 => 0,
            },
        };
        tag & self.ref_tag_mask()
    }

    /// The reference tag of block `index` of a command whose initial reference tag is
    /// `initial`: for types 1 and 2 the initial tag plus the index (with the default
    /// initial tag, type 1's tag is the block's LBA), for type 3 the initial tag.
    pub const fn block_ref_tag(&self, initial: u64, index: u64) -> u64 {
        let tag = match self.pi_type {
            ProtectionType::Type1 | ProtectionType::Type2 => initial.wrapping_add(index),
            ProtectionType::None | ProtectionType::Type3 => initial,
        };
        tag & self.ref_tag_mask()
    }

    /// Whether a tuple with these tags disables checking of its block: application
    /// tag FFFFh, and for type 3 also an all-ones reference tag.
    pub const fn is_escape(&self, app_tag: u16, ref_tag: u64) -> bool {
        app_tag == crate::spec::pi::APP_TAG_ESCAPE
            && (!matches!(self.pi_type, ProtectionType::Type3) || ref_tag == self.ref_tag_mask())
    }
}

impl Namespace {
    /// The namespace's protection information layout (see [`Protection::of`]).
    pub fn protection(&self) -> Result<Option<Protection>, Error> {
        Protection::of(self)
    }
}
