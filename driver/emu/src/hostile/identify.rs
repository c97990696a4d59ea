//! Identify pages with absurd values: NN 0 or 2^32-1, MDTS 0 or 255, zero and huge
//! namespace sizes and capacities, FLBAS and LBA format indexes out of range, LBADS 0 or
//! 63, metadata sizes that overflow, NLBAF above 64.

use rand::Rng;

use super::Hostile;

// Byte offsets in the Identify data structures (NVMe Base Specification 2.0,
// figures 275 and 276).
const CTRL_MDTS: usize = 77;
const CTRL_NN: usize = 516;
const NS_NSZE: usize = 0;
const NS_NCAP: usize = 8;
const NS_NUSE: usize = 16;
const NS_NLBAF: usize = 25;
const NS_FLBAS: usize = 26;
const NS_LBAF: usize = 128;

fn put_u64(page: &mut [u8; 4096], at: usize, v: u64) {
    page[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

impl Hostile {
    /// Falsifies the Identify page of CNS `cns` in place (sometimes).
    pub(crate) fn identify(&self, cns: u8, page: &mut [u8; 4096]) {
        let c = &self.counters;
        self.maybe(
            &c.identify_pages,
            &c.identify_pages_tampered,
            |rng| match cns {
                0x01 => match rng.gen_range(0..5) {
                    0 => page[CTRL_NN..CTRL_NN + 4].copy_from_slice(&0u32.to_le_bytes()),
                    1 => page[CTRL_NN..CTRL_NN + 4].copy_from_slice(&u32::MAX.to_le_bytes()),
                    2 => page[CTRL_MDTS] = 0,
                    3 => page[CTRL_MDTS] = 255,
                    _ => page[rng.gen_range(0..4096)] = rng.gen(),
                },
                0x00 => match rng.gen_range(0..9) {
                    0 => put_u64(page, NS_NSZE, 0),
                    1 => {
                        put_u64(page, NS_NSZE, u64::MAX);
                        put_u64(page, NS_NCAP, u64::MAX);
                        put_u64(page, NS_NUSE, u64::MAX);
                    }
                    2 => put_u64(page, NS_NCAP, rng.gen()),
                    3 => page[NS_FLBAS] = rng.gen(),
                    4 => page[NS_NLBAF] = rng.gen_range(64..=255),
                    5 => {
                        // LBADS (bits 23:16 of the in-use format) 0 or 63.
                        let f = usize::from(page[NS_FLBAS] & 0xf);
                        page[NS_LBAF + 4 * f + 2] = if rng.gen() { 0 } else { 63 };
                    }
                    6 => {
                        // Metadata size 0xffff, extended: a block of data plus metadata that
                        // overflows anything small.
                        let f = usize::from(page[NS_FLBAS] & 0xf);
                        page[NS_LBAF + 4 * f..NS_LBAF + 4 * f + 2].copy_from_slice(&[0xff, 0xff]);
                        page[NS_FLBAS] |= 0x10;
                    }
                    7 => {
                        for b in page[NS_LBAF..NS_LBAF + 64 * 4].iter_mut() {
                            *b = rng.gen();
                        }
                    }
                    _ => page[rng.gen_range(0..4096)] = rng.gen(),
                },
                _ => {
                    for _ in 0..rng.gen_range(1..16) {
                        page[rng.gen_range(0..4096)] = rng.gen();
                    }
                }
            },
        );
    }
}
