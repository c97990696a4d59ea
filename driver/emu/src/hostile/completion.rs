//! Lying completions: wrong phase, unknown or duplicate command ids, wrong SQ ids, SQ
//! heads outside the queue, random statuses, completions for idle slots.

use std::sync::atomic::AtomicU32;

use nvme_spec::{CompletionEntry, Status};
use rand::Rng;

use super::Hostile;
use crate::iommu::{DmaFault, MemView};
use crate::queue::CqState;

/// How a completion is posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CqeLie {
    /// As it is (possibly with falsified fields).
    Post,
    /// With the phase tag of the previous pass, so the driver cannot see it.
    WrongPhase,
    /// Twice.
    Duplicate,
    /// Followed by a completion for a command id that may be idle.
    IdleSlot(u16),
}

impl Hostile {
    /// Decides how to falsify `cqe`, a completion for a command of a queue of
    /// `sq_size` entries; field lies are applied to `cqe` here.
    pub(crate) fn completion(&self, cqe: &mut CompletionEntry, sq_size: u32) -> CqeLie {
        let c = &self.counters;
        self.maybe(&c.completions, &c.completions_tampered, |rng| {
            match rng.gen_range(0..8) {
                0 => CqeLie::WrongPhase,
                1 => CqeLie::Duplicate,
                2 => CqeLie::IdleSlot(rng.gen_range(0..sq_size.max(1)) as u16),
                3 => {
                    cqe.cid = rng.gen();
                    CqeLie::Post
                }
                4 => {
                    cqe.sq_id = rng.gen();
                    CqeLie::Post
                }
                5 => {
                    // An SQ head at or past the queue's end.
                    cqe.sq_head = rng.gen_range(sq_size.min(0xffff) as u16..=u16::MAX);
                    CqeLie::Post
                }
                6 => {
                    // Any status: SCT, SC, CRD, More and DNR all random.
                    cqe.status = Status::from_raw(rng.gen::<u16>() & !1);
                    CqeLie::Post
                }
                _ => {
                    // A plausible status on a command that did something else.
                    let sc: [u8; 7] = [0x00, 0x02, 0x04, 0x06, 0x80, 0x81, 0x82];
                    cqe.status = Status::from_raw(u16::from(sc[rng.gen_range(0..sc.len())]) << 1)
                        .with_dnr(rng.gen())
                        .with_more(rng.gen());
                    cqe.dw0 = rng.gen();
                    CqeLie::Post
                }
            }
        })
        .unwrap_or(CqeLie::Post)
    }
}

/// Posts `cqe`, a completion for a command of a queue of `sq_size` entries, with the
/// lie `hostile` decides on; out of line, so an honest device's posting stays inline.
#[cold]
#[inline(never)]
pub(crate) fn post_hostile(
    hostile: &Hostile,
    cq: &mut CqState,
    view: &mut MemView,
    db: &AtomicU32,
    mut cqe: CompletionEntry,
    sq_size: u32,
) -> Result<(), DmaFault> {
    let lie = hostile.completion(&mut cqe, sq_size);
    post(cq, view, db, cqe, lie)
}

/// Posts `cqe` the way `lie` says. Extra entries are posted only where the queue has
/// room; the caller checked room for the first.
pub(crate) fn post(
    cq: &mut CqState,
    view: &mut MemView,
    db: &AtomicU32,
    cqe: CompletionEntry,
    lie: CqeLie,
) -> Result<(), DmaFault> {
    match lie {
        CqeLie::Post => cq.post(view, cqe),
        CqeLie::WrongPhase => {
            let mut bad = cqe;
            bad.status = bad.status.with_phase(!cq.phase);
            view.write_cqe(
                cq.base.wrapping_add(u64::from(cq.tail) * 16),
                &bad.to_bytes(),
            )?;
            cq.tail += 1;
            if cq.tail == cq.size {
                cq.tail = 0;
                cq.phase = !cq.phase;
            }
            Ok(())
        }
        CqeLie::Duplicate => {
            cq.post(view, cqe)?;
            if cq.has_room(view, db) {
                cq.post(view, cqe)?;
            }
            Ok(())
        }
        CqeLie::IdleSlot(cid) => {
            cq.post(view, cqe)?;
            if cq.has_room(view, db) {
                cq.post(view, CompletionEntry { cid, ..cqe })?;
            }
            Ok(())
        }
    }
}
