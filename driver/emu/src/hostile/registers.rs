//! Register reads that change under the driver: CAP with MQES 0, DSTRD 15, TO 0 or
//! MPSMIN above MPSMAX; CSTS flapping RDY and CFS; random values elsewhere.

use nvme_spec::registers::offset;
use rand::Rng;

use super::Hostile;

impl Hostile {
    /// The value a read of the register at `off` returns instead of `value`.
    pub(crate) fn register(&self, off: usize, value: u32) -> u32 {
        let c = &self.counters;
        self.maybe(&c.register_reads, &c.register_reads_tampered, |rng| {
            match off {
                // CAP bits 15:0 MQES, 31:24 TO.
                offset::CAP => match rng.gen_range(0..3) {
                    0 => value & !0xffff,
                    1 => value & 0x00ff_ffff,
                    _ => rng.gen(),
                },
                // CAP bits 35:32 DSTRD, 51:48 MPSMIN, 55:52 MPSMAX.
                o if o == offset::CAP + 4 => match rng.gen_range(0..3) {
                    0 => value | 0xf,
                    1 => (value & !0x00ff_0000) | 0x000f_0000,
                    _ => rng.gen(),
                },
                // CSTS bit 0 RDY, bit 1 CFS, bits 3:2 SHST.
                offset::CSTS => match rng.gen_range(0..4) {
                    0 => value ^ 1,
                    1 => value | 2,
                    2 => value ^ (rng.gen_range(1..4) << 2),
                    _ => rng.gen(),
                },
                _ => rng.gen(),
            }
        })
        .unwrap_or(value)
    }
}
