//! Host-generated protection information: filling each block's tuple before a write
//! and checking the tuples a read brought back. DMA memory is reached only through
//! [`VolatileSlice`]; the guard is computed over stack-sized pieces, so nothing is
//! allocated.

use hugepages::VolatileSlice;
use zerocopy::IntoBytes;

use super::{PiCheck, Protection};
use crate::queue::{IoFlags, IoOptions};
use crate::spec::pi::{Pi16, Pi8, PiFormat, GUARD16, GUARD64};
use crate::Error;

/// Bytes copied out of DMA memory at a time while computing a guard.
const GUARD_CHUNK: usize = 512;

/// Where one block's pieces lie in the command's buffers.
struct Block<'a> {
    data: VolatileSlice<'a>,
    data_at: usize,
    metadata: VolatileSlice<'a>,
    metadata_at: usize,
}

/// The buffers of one command, checked against the protection layout.
struct Buffers<'a> {
    p: Protection,
    data: VolatileSlice<'a>,
    metadata: VolatileSlice<'a>,
    blocks: usize,
}

impl<'a> Buffers<'a> {
    fn new(
        p: &Protection,
        data: VolatileSlice<'a>,
        metadata: Option<VolatileSlice<'a>>,
    ) -> Result<Self, Error> {
        let stride = p.data_buffer_block_size();
        let blocks = data.len() / stride;
        if data.is_empty() || data.len() % stride != 0 {
            return Err(Error::PiBufferLength {
                buffer: "data",
                len: data.len(),
                expected: stride,
            });
        }
        let md_block = p.metadata_buffer_block_size();
        let metadata = match (md_block, metadata) {
            (0, None) => VolatileSlice::empty(),
            (0, Some(m)) => {
                return Err(Error::PiBufferLength {
                    buffer: "metadata",
                    len: m.len(),
                    expected: 0,
                })
            }
            (n, m) => {
                let m = m.unwrap_or(VolatileSlice::empty());
                if m.len() != blocks * n {
                    return Err(Error::PiBufferLength {
                        buffer: "metadata",
                        len: m.len(),
                        expected: blocks * n,
                    });
                }
                m
            }
        };
        Ok(Self {
            p: *p,
            data,
            metadata,
            blocks,
        })
    }

    fn block(&self, i: usize) -> Block<'a> {
        let stride = self.p.data_buffer_block_size();
        let data_at = i * stride;
        match self.p.metadata_buffer_block_size() {
            0 => Block {
                data: self.data,
                data_at,
                metadata: self.data,
                metadata_at: data_at + self.p.data_size as usize,
            },
            ms => Block {
                data: self.data,
                data_at,
                metadata: self.metadata,
                metadata_at: i * ms,
            },
        }
    }
}

/// Feeds `len` bytes of `mem` at `at` to `update`, a stack-sized piece at a time.
fn feed(
    mem: &VolatileSlice<'_>,
    at: usize,
    len: usize,
    update: &mut impl FnMut(&[u8]),
) -> Result<(), Error> {
    let mut chunk = [0u8; GUARD_CHUNK];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(GUARD_CHUNK);
        mem.read(at + done, &mut chunk[..n])?;
        update(&chunk[..n]);
        done += n;
    }
    Ok(())
}

/// The guard of block `b`: its data, then the metadata bytes before the tuple.
fn guard(p: &Protection, b: &Block<'_>) -> Result<u64, Error> {
    let ds = p.data_size as usize;
    let before = p.tuple_offset();
    match p.guard {
        PiFormat::Guard16 => {
            let mut d = GUARD16.digest();
            let mut update = |bytes: &[u8]| d.update(bytes);
            feed(&b.data, b.data_at, ds, &mut update)?;
            feed(&b.metadata, b.metadata_at, before, &mut update)?;
            Ok(u64::from(d.finalize()))
        }
        PiFormat::Guard32 | PiFormat::Guard64 => {
            let mut d = GUARD64.digest();
            let mut update = |bytes: &[u8]| d.update(bytes);
            feed(&b.data, b.data_at, ds, &mut update)?;
            feed(&b.metadata, b.metadata_at, before, &mut update)?;
            Ok(d.finalize())
        }
    }
}

/// A tuple's fields, widened to the largest format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tuple {
    guard: u64,
    app_tag: u16,
    ref_tag: u64,
}

fn write_tuple(p: &Protection, b: &Block<'_>, t: Tuple) -> Result<(), Error> {
    let at = b.metadata_at + p.tuple_offset();
    match p.guard {
        PiFormat::Guard16 => {
            let pi = Pi8::new(t.guard as u16, t.app_tag, t.ref_tag as u32);
            b.metadata.write(at, pi.as_bytes())?;
        }
        PiFormat::Guard32 | PiFormat::Guard64 => {
            // The storage tag bits above the reference tag are written as zero.
            let pi = Pi16::new(t.guard, t.app_tag, t.ref_tag);
            b.metadata.write(at, pi.as_bytes())?;
        }
    }
    Ok(())
}

fn read_tuple(p: &Protection, b: &Block<'_>) -> Result<Tuple, Error> {
    let at = b.metadata_at + p.tuple_offset();
    let mut raw = [0u8; 16];
    let raw = &mut raw[..p.tuple_size()];
    b.metadata.read(at, raw)?;
    // The slice is exactly one tuple long, so both reads succeed.
    Ok(match p.guard {
        PiFormat::Guard16 => {
            let pi = Pi8::read(raw).unwrap_or_default();
            Tuple {
                guard: u64::from(pi.guard.get()),
                app_tag: pi.app_tag.get(),
                ref_tag: u64::from(pi.ref_tag.get()),
            }
        }
        PiFormat::Guard32 | PiFormat::Guard64 => {
            let pi = Pi16::read(raw).unwrap_or_default();
            Tuple {
                guard: pi.guard.get(),
                app_tag: pi.app_tag.get(),
                ref_tag: pi.reference_tag(p.storage_tag_bits),
            }
        }
    })
}

/// Fills the protection information tuple of every block of a write starting at
/// `slba`: the guard over the block's data (and any metadata before the tuple), the
/// application tag `opts.app_tag`, and the reference tag the protection type calls for
/// from `opts.ref_tag` or, by default, the LBA (see [`Protection::block_ref_tag`]).
///
/// `data` is the write's data buffer (for extended LBAs, data and metadata of each
/// block); `metadata` is its separate metadata buffer on a namespace that has one. The
/// number of blocks is the data buffer's length over the block size; the other bytes
/// of each block are left as they are. Issue the write with the same `opts` (and
/// [`IoFlags::PRCHK`] to have the controller check the tuples on the way in).
pub fn generate(
    p: &Protection,
    slba: u64,
    opts: &IoOptions,
    data: VolatileSlice<'_>,
    metadata: Option<VolatileSlice<'_>>,
) -> Result<(), Error> {
    let bufs = Buffers::new(p, data, metadata)?;
    let initial = p.initial_ref_tag(slba, opts.ref_tag);
    for i in 0..bufs.blocks {
        let b = bufs.block(i);
        let t = Tuple {
            guard: guard(p, &b)?,
            app_tag: opts.app_tag,
            ref_tag: p.block_ref_tag(initial, i as u64),
        };
        write_tuple(p, &b, t)?;
    }
    Ok(())
}

/// Checks the protection information tuples of a read starting at `slba`, as the
/// controller checks them: the fields `opts.flags` selects
/// ([`IoFlags::PRCHK_GUARD`], [`IoFlags::PRCHK_APP`] under `opts.app_tag_mask`,
/// [`IoFlags::PRCHK_REF`]), in that order, skipping blocks whose tags are the escape
/// values. The first mismatch is [`Error::PiMismatch`] naming its LBA, the field and
/// the expected and found values. The buffers are laid out as for [`generate`].
pub fn verify(
    p: &Protection,
    slba: u64,
    opts: &IoOptions,
    data: VolatileSlice<'_>,
    metadata: Option<VolatileSlice<'_>>,
) -> Result<(), Error> {
    let bufs = Buffers::new(p, data, metadata)?;
    let initial = p.initial_ref_tag(slba, opts.ref_tag);
    let mask = opts.app_tag_mask;
    for i in 0..bufs.blocks {
        let b = bufs.block(i);
        let found = read_tuple(p, &b)?;
        if p.is_escape(found.app_tag, found.ref_tag) {
            continue;
        }
        let lba = slba.wrapping_add(i as u64);
        let mismatch = |check, expected, found| Error::PiMismatch {
            lba,
            check,
            expected,
            found,
        };
        if opts.flags.contains(IoFlags::PRCHK_GUARD) {
            let expected = guard(p, &b)?;
            if found.guard != expected {
                return Err(mismatch(PiCheck::Guard, expected, found.guard));
            }
        }
        if opts.flags.contains(IoFlags::PRCHK_APP) && found.app_tag & mask != opts.app_tag & mask {
            return Err(mismatch(
                PiCheck::ApplicationTag,
                u64::from(opts.app_tag & mask),
                u64::from(found.app_tag & mask),
            ));
        }
        if opts.flags.contains(IoFlags::PRCHK_REF) {
            let expected = p.block_ref_tag(initial, i as u64);
            if found.ref_tag != expected {
                return Err(mismatch(PiCheck::ReferenceTag, expected, found.ref_tag));
            }
        }
    }
    Ok(())
}
