//! Zoned namespaces (NVMe Zoned Namespace Command Set Specification 1.1): the zone
//! state machine, write pointer checks, Zone Append, Zone Management Send and
//! Receive, the open and active resource limits, and what a power cut leaves.
//!
//! Every zone is Sequential Write Required. A write or append reserves its blocks
//! under the zone table lock, a leaf lock (see the controller's lock order), and
//! moves the data after releasing it; a transfer that then fails gives the blocks
//! back if nothing was written after them. Like QEMU's controller, reads may not
//! cross a zone boundary (OZCS.RAZB 0), an opened zone that has to make room for
//! another is an implicitly opened one (closed by the controller), and a controller
//! reset or power cut closes every open zone.

use hugepages::sync::lock;
use std::sync::Mutex;

use nvme_spec::status::{CommandSpecificStatus as C, GenericStatus as G};
use nvme_spec::zns::{
    ZoneDescriptor, ZoneReceiveAction, ZoneReportFilter, ZoneReportHeader, ZoneSendAction,
    ZoneState, ZONE_DESCRIPTOR_SIZE,
};
use nvme_spec::{NvmOpcode as Op, Status, SubmissionEntry};
use zerocopy::IntoBytes;

use crate::config::ZonedConfig;
use crate::controller::{generic, Ctrl, Ctx, Outcome};
use crate::namespace::{sg_copy_from, Namespace};

fn zns(code: C) -> Status {
    Status::command_specific(code)
}

/// One zone's mutable state.
#[derive(Debug, Clone, Copy)]
struct Zone {
    state: ZoneState,
    /// Next LBA to write (the zone start when Empty).
    wp: u64,
    /// Made Full by the controller to stay within the active limit (ZA.ZFC).
    finished_by_controller: bool,
}

/// The zone table and its resource counters.
struct Table {
    zones: Box<[Zone]>,
    open: u32,
    active: u32,
}

/// The zones of one namespace.
pub(crate) struct Zones {
    /// Zone size in blocks (ZSZE).
    pub zone_blocks: u64,
    /// Zone capacity in blocks (ZCAP).
    pub cap_blocks: u64,
    /// Maximum Open Resources; 0 for no limit.
    pub max_open: u32,
    /// Maximum Active Resources; 0 for no limit.
    pub max_active: u32,
    table: Mutex<Table>,
}

/// A block range `(slba, nlb)` to deallocate once the table lock is released.
pub(crate) type Dealloc = Vec<(u64, u64)>;

impl Zones {
    /// The zones of a namespace of `blocks` blocks of `lba_size` bytes.
    pub(crate) fn new(cfg: &ZonedConfig, lba_size: u32, blocks: u64) -> Self {
        let zone_blocks = (cfg.zone_size / u64::from(lba_size)).max(1);
        let count = (blocks / zone_blocks) as usize;
        let zones = (0..count as u64)
            .map(|i| Zone {
                state: ZoneState::Empty,
                wp: i * zone_blocks,
                finished_by_controller: false,
            })
            .collect();
        Self {
            zone_blocks,
            cap_blocks: (cfg.zone_cap / u64::from(lba_size)).clamp(1, zone_blocks),
            max_open: cfg.max_open,
            max_active: cfg.max_active,
            table: Mutex::new(Table {
                zones,
                open: 0,
                active: 0,
            }),
        }
    }

    fn start(&self, index: usize) -> u64 {
        index as u64 * self.zone_blocks
    }

    /// The zone holding `lba`, if any.
    fn index(&self, table: &Table, lba: u64) -> Option<usize> {
        let i = usize::try_from(lba / self.zone_blocks).ok()?;
        (i < table.zones.len()).then_some(i)
    }

    /// Reserves `nlb` blocks of a Write at `slba`: the zone's write pointer must be
    /// `slba` and the blocks must fit in its capacity.
    pub(crate) fn write(&self, slba: u64, nlb: u64) -> Result<(), Status> {
        let mut t = lock(&self.table);
        let i = self.index(&t, slba).ok_or(generic(G::LbaOutOfRange))?;
        self.advance(&mut t, i, Some(slba), nlb).map(|_| ())
    }

    /// Reserves `nlb` blocks of a Zone Append to the zone starting at `zslba`; returns
    /// the LBA they go to.
    pub(crate) fn append(&self, zslba: u64, nlb: u64) -> Result<u64, Status> {
        let mut t = lock(&self.table);
        let i = self.index(&t, zslba).ok_or(generic(G::LbaOutOfRange))?;
        if zslba != self.start(i) {
            return Err(generic(G::InvalidFieldInCommand));
        }
        self.advance(&mut t, i, None, nlb)
    }

    fn advance(&self, t: &mut Table, i: usize, at: Option<u64>, nlb: u64) -> Result<u64, Status> {
        let z = t.zones[i];
        match z.state {
            ZoneState::Offline => return Err(zns(C::ZoneIsOffline)),
            ZoneState::ReadOnly => return Err(zns(C::ZoneIsReadOnly)),
            ZoneState::Full => return Err(zns(C::ZoneIsFull)),
            _ => {}
        }
        let lba = match at {
            Some(slba) if slba != z.wp => return Err(zns(C::ZoneInvalidWrite)),
            Some(slba) => slba,
            None => z.wp,
        };
        let cap_end = self.start(i) + self.cap_blocks;
        if lba.saturating_add(nlb) > cap_end {
            return Err(zns(C::ZoneBoundaryError));
        }
        match z.state {
            ZoneState::Empty => self.make_room(t, i, true)?,
            ZoneState::Closed => self.make_room(t, i, false)?,
            _ => {}
        }
        if !z.state.is_open() {
            self.set_state(t, i, ZoneState::ImplicitlyOpened);
        }
        t.zones[i].wp = lba + nlb;
        if lba + nlb == cap_end {
            self.set_state(t, i, ZoneState::Full);
        }
        Ok(lba)
    }

    /// Gives back the blocks a failed transfer reserved, if nothing came after them.
    pub(crate) fn rollback(&self, lba: u64, nlb: u64) {
        let mut t = lock(&self.table);
        let Some(i) = self.index(&t, lba) else {
            return;
        };
        let z = t.zones[i];
        let written_to_cap = z.state == ZoneState::Full && !z.finished_by_controller;
        if z.wp == lba + nlb && (z.state.is_open() || written_to_cap) {
            if written_to_cap {
                // Back to the open state it was filled from; the resources it released
                // are taken again only if they are free.
                let room = (self.max_active == 0 || t.active < self.max_active)
                    && (self.max_open == 0 || t.open < self.max_open);
                if !room {
                    return;
                }
                self.set_state(&mut t, i, ZoneState::ImplicitlyOpened);
            }
            t.zones[i].wp = lba;
        }
    }

    /// Checks a read of `nlb` blocks at `slba`: within one zone, not Offline.
    pub(crate) fn read(&self, slba: u64, nlb: u64) -> Result<(), Status> {
        let t = lock(&self.table);
        let i = self.index(&t, slba).ok_or(generic(G::LbaOutOfRange))?;
        if slba.saturating_add(nlb) > self.start(i) + self.zone_blocks {
            return Err(zns(C::ZoneBoundaryError));
        }
        if t.zones[i].state == ZoneState::Offline {
            return Err(zns(C::ZoneIsOffline));
        }
        Ok(())
    }

    /// Changes zone `i`'s state, keeping the open and active counts.
    fn set_state(&self, t: &mut Table, i: usize, new: ZoneState) {
        let old = t.zones[i].state;
        t.open = t.open - u32::from(old.is_open()) + u32::from(new.is_open());
        t.active = t.active - u32::from(old.is_active()) + u32::from(new.is_active());
        t.zones[i].state = new;
        if new != ZoneState::Full {
            t.zones[i].finished_by_controller = false;
        }
    }

    /// Makes room to open zone `i` (and to activate it with `activate`): the active
    /// limit is a hard one; at the open limit an implicitly opened zone is closed.
    fn make_room(&self, t: &mut Table, i: usize, activate: bool) -> Result<(), Status> {
        if activate && self.max_active != 0 && t.active >= self.max_active {
            return Err(zns(C::TooManyActiveZones));
        }
        if self.max_open != 0 && t.open >= self.max_open {
            let victim = (0..t.zones.len())
                .find(|&j| j != i && t.zones[j].state == ZoneState::ImplicitlyOpened);
            match victim {
                Some(j) => self.set_state(t, j, ZoneState::Closed),
                None => return Err(zns(C::TooManyOpenZones)),
            }
        }
        Ok(())
    }

    /// Zone Management Send: applies `action` to the zone starting at `zslba`, or with
    /// `all` to every zone in a state the action leaves. Returns the ranges to
    /// deallocate (the zones reset).
    pub(crate) fn send(
        &self,
        zslba: u64,
        action: ZoneSendAction,
        all: bool,
    ) -> Result<Dealloc, Status> {
        let mut t = lock(&self.table);
        let mut dealloc = Vec::new();
        if all {
            for i in 0..t.zones.len() {
                let s = t.zones[i].state;
                let selected = match action {
                    ZoneSendAction::Close => s.is_open(),
                    ZoneSendAction::Finish => s.is_active(),
                    ZoneSendAction::Open => s == ZoneState::Closed,
                    ZoneSendAction::Reset => s.is_active() || s == ZoneState::Full,
                    ZoneSendAction::Offline => s == ZoneState::ReadOnly,
                    ZoneSendAction::SetDescriptorExtension => {
                        return Err(generic(G::InvalidFieldInCommand))
                    }
                };
                if selected {
                    self.act(&mut t, i, action, &mut dealloc)?;
                }
            }
            return Ok(dealloc);
        }
        let i = self.index(&t, zslba).ok_or(generic(G::LbaOutOfRange))?;
        if zslba != self.start(i) {
            return Err(generic(G::InvalidFieldInCommand));
        }
        self.act(&mut t, i, action, &mut dealloc)?;
        Ok(dealloc)
    }

    fn act(
        &self,
        t: &mut Table,
        i: usize,
        action: ZoneSendAction,
        dealloc: &mut Dealloc,
    ) -> Result<(), Status> {
        use ZoneState as S;
        let state = t.zones[i].state;
        let invalid = Err(zns(C::InvalidZoneStateTransition));
        match action {
            ZoneSendAction::Open => match state {
                S::ExplicitlyOpened => {}
                S::ImplicitlyOpened => self.set_state(t, i, S::ExplicitlyOpened),
                S::Empty | S::Closed => {
                    self.make_room(t, i, state == S::Empty)?;
                    self.set_state(t, i, S::ExplicitlyOpened);
                }
                _ => return invalid,
            },
            ZoneSendAction::Close => match state {
                S::Closed => {}
                S::ImplicitlyOpened | S::ExplicitlyOpened => self.set_state(t, i, S::Closed),
                _ => return invalid,
            },
            ZoneSendAction::Finish => match state {
                S::Full => {}
                S::Empty | S::ImplicitlyOpened | S::ExplicitlyOpened | S::Closed => {
                    if state == S::Empty && self.max_active != 0 && t.active >= self.max_active {
                        return Err(zns(C::TooManyActiveZones));
                    }
                    self.set_state(t, i, S::Full);
                    t.zones[i].wp = self.start(i) + self.cap_blocks;
                }
                _ => return invalid,
            },
            ZoneSendAction::Reset => match state {
                S::Empty => {}
                S::ImplicitlyOpened | S::ExplicitlyOpened | S::Closed | S::Full => {
                    self.set_state(t, i, S::Empty);
                    t.zones[i].wp = self.start(i);
                    dealloc.push((self.start(i), self.zone_blocks));
                }
                _ => return invalid,
            },
            ZoneSendAction::Offline => match state {
                S::Offline => {}
                S::ReadOnly => {
                    self.set_state(t, i, S::Offline);
                    t.zones[i].wp = self.start(i);
                }
                _ => return invalid,
            },
            // No zone descriptor extension (ZDES 0).
            ZoneSendAction::SetDescriptorExtension => {
                return Err(generic(G::InvalidFieldInCommand))
            }
        }
        Ok(())
    }

    /// Report Zones from the zone holding `slba`: the header count and at most
    /// `room` descriptors of the zones `filter` selects.
    pub(crate) fn report(
        &self,
        slba: u64,
        filter: ZoneReportFilter,
        partial: bool,
        room: usize,
    ) -> Result<Vec<u8>, Status> {
        let t = lock(&self.table);
        let first = self.index(&t, slba).ok_or(generic(G::LbaOutOfRange))?;
        let mut matched = 0u64;
        let mut out = Vec::with_capacity(ZONE_DESCRIPTOR_SIZE * (room.min(64) + 1));
        out.extend_from_slice(ZoneReportHeader::new(0).as_bytes());
        for (i, z) in t.zones.iter().enumerate().skip(first) {
            if !filter.matches(z.state) {
                continue;
            }
            matched += 1;
            if (matched as usize) <= room {
                let mut d = ZoneDescriptor::new(z.state, self.start(i), self.cap_blocks, z.wp);
                d.za = d.za.with_zfc(z.finished_by_controller);
                out.extend_from_slice(d.as_bytes());
            } else if partial {
                break;
            }
        }
        let reported = if partial {
            matched.min(room as u64)
        } else {
            matched
        };
        out[..8].copy_from_slice(&reported.to_le_bytes());
        Ok(out)
    }

    /// Controller reset or shutdown: every open zone is closed, or Empty if nothing
    /// was written to it.
    pub(crate) fn close_open_zones(&self) {
        let mut t = lock(&self.table);
        for i in 0..t.zones.len() {
            if t.zones[i].state.is_open() {
                let empty = t.zones[i].wp == self.start(i);
                self.set_state(
                    &mut t,
                    i,
                    if empty {
                        ZoneState::Empty
                    } else {
                        ZoneState::Closed
                    },
                );
            }
        }
    }

    /// Power loss: each zone's write pointer goes back to its first block that was not
    /// durable (`lost` lists the blocks the write cache held). Returns the ranges
    /// between the new and the old write pointers, to deallocate.
    pub(crate) fn power_cut(&self, lost: &[u64]) -> Dealloc {
        let mut t = lock(&self.table);
        let mut first_lost: Vec<Option<u64>> = vec![None; t.zones.len()];
        for &lba in lost {
            if let Some(i) = self.index(&t, lba) {
                let f = &mut first_lost[i];
                *f = Some(f.map_or(lba, |x: u64| x.min(lba)));
            }
        }
        let mut dealloc = Vec::new();
        for (i, lost_at) in first_lost.into_iter().enumerate() {
            let z = t.zones[i];
            let Some(lba) = lost_at else { continue };
            let written_to = match z.state {
                ZoneState::Full if !z.finished_by_controller => self.start(i) + self.cap_blocks,
                s if s.is_active() => z.wp,
                _ => continue,
            };
            if lba >= written_to {
                continue;
            }
            dealloc.push((lba, written_to - lba));
            if z.state == ZoneState::Full {
                if lba == self.start(i) {
                    self.set_state(&mut t, i, ZoneState::Empty);
                } else if self.max_active == 0 || t.active < self.max_active {
                    self.set_state(&mut t, i, ZoneState::Closed);
                } else {
                    // No active resource to hold it: the controller finishes it.
                    t.zones[i].finished_by_controller = true;
                    continue;
                }
            }
            t.zones[i].wp = lba;
        }
        drop(t);
        self.close_open_zones();
        let mut t = lock(&self.table);
        for i in 0..t.zones.len() {
            if t.zones[i].state == ZoneState::Closed && t.zones[i].wp == self.start(i) {
                self.set_state(&mut t, i, ZoneState::Empty);
            }
        }
        dealloc
    }

    /// Test support: puts zone `index` in the Read Only or Offline state.
    pub(crate) fn force_state(&self, index: u64, state: ZoneState) -> bool {
        let mut t = lock(&self.table);
        let Some(i) = usize::try_from(index).ok().filter(|&i| i < t.zones.len()) else {
            return false;
        };
        self.set_state(&mut t, i, state);
        true
    }
}

impl Ctrl {
    /// Zone Append, Zone Management Send and Zone Management Receive on a namespace.
    pub(crate) fn exec_zoned(
        &self,
        ctx: &mut Ctx<'_>,
        ns: &Namespace,
        sqe: &SubmissionEntry,
        ps: u64,
    ) -> Outcome {
        let Some(zones) = ns.zones.as_ref().filter(|_| self.regs.all_command_sets()) else {
            return Outcome::Done(0, generic(G::InvalidCommandOpcode));
        };
        match sqe.nvm_opcode() {
            Op::ZONE_APPEND => self.zone_append(ctx, ns, zones, sqe, ps),
            Op::ZONE_MANAGEMENT_SEND => {
                let c = sqe.zone_send_cdw13();
                let Some(action) = ZoneSendAction::from_bits(c.zsa()) else {
                    return Outcome::Done(0, generic(G::InvalidFieldInCommand));
                };
                match zones.send(sqe.slba(), action, c.select_all()) {
                    Ok(dealloc) => {
                        for (slba, nlb) in dealloc {
                            if ns.zero(slba, nlb).is_err() {
                                return Outcome::Done(
                                    0,
                                    Status::media(nvme_spec::status::MediaStatus::WriteFault),
                                );
                            }
                        }
                        Outcome::Done(0, Status::SUCCESS)
                    }
                    Err(s) => Outcome::Done(0, s),
                }
            }
            _ => Outcome::Done(0, self.zone_report(ctx, zones, sqe, ps)),
        }
    }

    fn zone_append(
        &self,
        ctx: &mut Ctx<'_>,
        ns: &Namespace,
        zones: &Zones,
        sqe: &SubmissionEntry,
        ps: u64,
    ) -> Outcome {
        let nlb = u64::from(sqe.block_count());
        let lba = match zones.append(sqe.slba(), nlb) {
            Ok(lba) => lba,
            Err(s) => return Outcome::Done(0, s),
        };
        let mut write = *sqe;
        write.set_slba(lba);
        match self.write_data(ctx, ns, &write, ps) {
            Outcome::Done(_, s) if s.is_success() => {
                ctx.scratch.dw1 = (lba >> 32) as u32;
                Outcome::Done(lba as u32, s)
            }
            Outcome::Done(dw0, s) => {
                zones.rollback(lba, nlb);
                Outcome::Done(dw0, s)
            }
            other => other,
        }
    }

    fn zone_report(
        &self,
        ctx: &mut Ctx<'_>,
        zones: &Zones,
        sqe: &SubmissionEntry,
        ps: u64,
    ) -> Status {
        let c = sqe.zone_receive_cdw13();
        let (Some(action), Some(filter)) = (
            ZoneReceiveAction::from_bits(c.zra()),
            ZoneReportFilter::from_bits(c.zrasf()),
        ) else {
            return generic(G::InvalidFieldInCommand);
        };
        // No zone descriptor extension (ZDES 0): the extended report is not offered.
        if action != ZoneReceiveAction::ReportZones {
            return generic(G::InvalidFieldInCommand);
        }
        let bytes = sqe.zone_receive_bytes();
        if bytes < ZONE_DESCRIPTOR_SIZE as u64 || bytes > self.max_transfer() {
            return generic(G::InvalidFieldInCommand);
        }
        let room = (bytes as usize - ZONE_DESCRIPTOR_SIZE) / ZONE_DESCRIPTOR_SIZE;
        let report = match zones.report(sqe.slba(), filter, c.partial(), room) {
            Ok(r) => r,
            Err(s) => return s,
        };
        if let Err(s) = self.map_data(ctx, sqe, report.len(), ps) {
            return s;
        }
        sg_copy_from(&ctx.scratch.segs, 0, &report);
        Status::SUCCESS
    }
}
