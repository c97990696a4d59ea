//! Fault injection: make the controller misbehave on purpose, from a test's handle.

use hugepages::sync::lock;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nvme_spec::Status;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::controller::Ctrl;
use crate::held::HeldCompletions;

/// Which commands a fault applies to. Every field left `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandMatch {
    /// Opcode byte.
    pub opcode: Option<u8>,
    /// Submission queue id (0 = admin).
    pub qid: Option<u16>,
    /// Namespace id.
    pub nsid: Option<u32>,
    /// Commands whose LBA range (CDW10-12) overlaps this range of blocks.
    pub lbas: Option<Range<u64>>,
    /// `Some(true)`: admin commands only; `Some(false)`: I/O commands only.
    pub admin: Option<bool>,
}

impl CommandMatch {
    /// Every I/O command (any I/O queue).
    pub fn io() -> Self {
        Self {
            admin: Some(false),
            ..Self::default()
        }
    }

    /// I/O commands with this opcode.
    pub fn io_opcode(opcode: u8) -> Self {
        Self {
            opcode: Some(opcode),
            admin: Some(false),
            ..Self::default()
        }
    }

    /// Admin commands with this opcode.
    pub fn admin_opcode(opcode: u8) -> Self {
        Self {
            opcode: Some(opcode),
            admin: Some(true),
            ..Self::default()
        }
    }

    pub(crate) fn matches(
        &self,
        qid: u16,
        opcode: u8,
        nsid: u32,
        lbas: Option<Range<u64>>,
    ) -> bool {
        self.opcode.is_none_or(|o| o == opcode)
            && self.qid.is_none_or(|q| q == qid)
            && self.nsid.is_none_or(|n| n == nsid)
            && self.admin.is_none_or(|a| a == (qid == 0))
            && self.lbas.as_ref().is_none_or(|want| {
                lbas.as_ref()
                    .is_some_and(|got| got.start < want.end && want.start < got.end)
            })
    }
}

/// What happens to a matching command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Complete it with this status without executing it.
    Fail(Status),
    /// Execute it but hold the completion until [`FaultControl::release_held`] (or an
    /// Abort, which completes it with Command Abort Requested).
    Hold,
    /// Execute it but hold the completion for this long (released by a timer).
    Delay(Duration),
    /// Execute it and never post a completion (Abort reports "not aborted").
    Drop,
    /// Execute it and post the completion with a command identifier nobody issued.
    WrongCid,
    /// Execute it and post the completion with a submission queue id that does not exist.
    WrongSqid,
    /// Complete it with `status` without executing it, with Command Retry Delay `crd`
    /// (0..=3; posted only while the host has enabled ACRE, as the specification
    /// says) and Do Not Retry set as `dnr` says.
    FailWith {
        /// The status code (its CRD and DNR bits are replaced).
        status: Status,
        /// Command Retry Delay: which CRDT the host waits before retrying (0: none).
        crd: u8,
        /// Do Not Retry.
        dnr: bool,
    },
}

struct Rule {
    matcher: CommandMatch,
    action: FaultAction,
    remaining: Option<u32>,
    /// A random rule applies to a matching command with this chance in 1000, drawn
    /// from its own seeded generator.
    chance: Option<(u16, SmallRng)>,
}

impl Rule {
    /// Whether the rule applies to this matching command (a random rule draws).
    fn fires(&mut self) -> bool {
        match self.chance.as_mut() {
            None => true,
            Some((permille, rng)) => rng.gen_range(0..1000u16) < *permille,
        }
    }
}

/// How many faults the controller applied, per kind, since it was created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultCounts {
    /// Commands completed with a [`FaultAction::Fail`] status without executing.
    pub failed: u64,
    /// Completions held by [`FaultAction::Hold`].
    pub held: u64,
    /// Completions delayed by [`FaultAction::Delay`].
    pub delayed: u64,
    /// Completions never posted ([`FaultAction::Drop`]).
    pub dropped: u64,
    /// Completions posted with a wrong command identifier.
    pub wrong_cid: u64,
    /// Completions posted with a wrong submission queue id.
    pub wrong_sqid: u64,
    /// Commands failed with Unrecovered Read Error by a [`FaultControl::media_error`] range.
    pub media_errors: u64,
    /// Reads whose data a [`FaultControl::corrupt_reads`] range corrupted.
    pub corrupted_reads: u64,
    /// Held or delayed completions posted later (released, or their delay ran out).
    pub released: u64,
    /// Held or delayed completions a controller reset discarded.
    pub discarded: u64,
}

/// The live counters behind [`FaultCounts`].
#[derive(Default)]
struct FaultCounters {
    failed: AtomicU64,
    held: AtomicU64,
    delayed: AtomicU64,
    dropped: AtomicU64,
    wrong_cid: AtomicU64,
    wrong_sqid: AtomicU64,
    media_errors: AtomicU64,
    corrupted_reads: AtomicU64,
    released: AtomicU64,
    discarded: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl FaultCounters {
    fn applied(&self, action: FaultAction) {
        let c = match action {
            FaultAction::Fail(_) | FaultAction::FailWith { .. } => &self.failed,
            FaultAction::Hold => &self.held,
            FaultAction::Delay(_) => &self.delayed,
            FaultAction::Drop => &self.dropped,
            FaultAction::WrongCid => &self.wrong_cid,
            FaultAction::WrongSqid => &self.wrong_sqid,
        };
        bump(c, 1);
    }

    fn snapshot(&self) -> FaultCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FaultCounts {
            failed: get(&self.failed),
            held: get(&self.held),
            delayed: get(&self.delayed),
            dropped: get(&self.dropped),
            wrong_cid: get(&self.wrong_cid),
            wrong_sqid: get(&self.wrong_sqid),
            media_errors: get(&self.media_errors),
            corrupted_reads: get(&self.corrupted_reads),
            released: get(&self.released),
            discarded: get(&self.discarded),
        }
    }
}

/// Faults injected from a [`FaultControl`]. Each list is a leaf lock.
#[derive(Default)]
pub(crate) struct FaultState {
    /// Set whenever any rule or range is installed: the hot path checks only this.
    pub armed: AtomicBool,
    /// Device removed: register reads return all ones, writes are ignored.
    pub gone: AtomicBool,
    rules: Mutex<Vec<Rule>>,
    media: Mutex<Vec<(u32, Range<u64>)>>,
    corrupt: Mutex<Vec<(u32, Range<u64>)>>,
    /// Completions held back by `Hold` and `Delay` rules.
    pub held: HeldCompletions,
    counts: FaultCounters,
}

fn overlaps(ranges: &[(u32, Range<u64>)], nsid: u32, lbas: &Range<u64>) -> Option<Range<u64>> {
    ranges.iter().find_map(|(n, r)| {
        (*n == nsid && r.start < lbas.end && lbas.start < r.end)
            .then(|| r.start.max(lbas.start)..r.end.min(lbas.end))
    })
}

impl FaultState {
    fn rearm(&self) {
        // One list at a time: they are leaf locks.
        let rules = !lock(&self.rules).is_empty();
        let media = !lock(&self.media).is_empty();
        let corrupt = !lock(&self.corrupt).is_empty();
        self.armed
            .store(rules || media || corrupt, Ordering::Release);
    }

    #[inline]
    pub(crate) fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// The action for this command, consuming one use of the first matching rule.
    pub(crate) fn take_action(
        &self,
        qid: u16,
        opcode: u8,
        nsid: u32,
        lbas: Option<Range<u64>>,
    ) -> Option<FaultAction> {
        let mut rules = lock(&self.rules);
        let i = rules
            .iter_mut()
            .position(|r| r.matcher.matches(qid, opcode, nsid, lbas.clone()) && r.fires())?;
        let action = rules[i].action;
        self.counts.applied(action);
        if let Some(n) = rules[i].remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                rules.remove(i);
                drop(rules);
                self.rearm();
            }
        }
        Some(action)
    }

    /// The part of `lbas` with an injected media error, if any.
    pub(crate) fn media_error(&self, nsid: u32, lbas: &Range<u64>) -> Option<Range<u64>> {
        let r = overlaps(&lock(&self.media), nsid, lbas);
        if r.is_some() {
            bump(&self.counts.media_errors, 1);
        }
        r
    }

    /// The part of `lbas` whose read data is corrupted, if any.
    pub(crate) fn corrupt(&self, nsid: u32, lbas: &Range<u64>) -> Option<Range<u64>> {
        let r = overlaps(&lock(&self.corrupt), nsid, lbas);
        if r.is_some() {
            bump(&self.counts.corrupted_reads, 1);
        }
        r
    }

    /// Counts `n` held completions posted after all.
    pub(crate) fn count_released(&self, n: usize) {
        bump(&self.counts.released, n as u64);
    }

    /// Counts `n` held completions a controller reset threw away.
    pub(crate) fn count_discarded(&self, n: usize) {
        bump(&self.counts.discarded, n as u64);
    }
}

/// Test handle for injecting faults into an [`crate::EmuController`].
#[derive(Clone)]
pub struct FaultControl {
    pub(crate) ctrl: Arc<Ctrl>,
}

impl std::fmt::Debug for FaultControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultControl").finish_non_exhaustive()
    }
}

impl FaultControl {
    fn state(&self) -> &FaultState {
        &self.ctrl.faults
    }

    /// Applies `action` to the next `count` commands matching `matcher` (`None`: to
    /// every matching command until [`FaultControl::clear`]). Rules are checked in the
    /// order they were added; the first match wins.
    pub fn inject(&self, matcher: CommandMatch, action: FaultAction, count: Option<u32>) {
        if count == Some(0) {
            return;
        }
        lock(&self.state().rules).push(Rule {
            matcher,
            action,
            remaining: count,
            chance: None,
        });
        self.state().armed.store(true, Ordering::Release);
    }

    /// Applies `action` to each command matching `matcher` with a chance of `permille`
    /// in 1000 (capped at 1000), drawn from a generator seeded with `seed`, until
    /// [`FaultControl::clear`]. The same commands in the same order draw the same faults.
    /// A command the rule passes over is checked against the rules after it.
    pub fn inject_random(
        &self,
        matcher: CommandMatch,
        action: FaultAction,
        permille: u16,
        seed: u64,
    ) {
        if permille == 0 {
            return;
        }
        lock(&self.state().rules).push(Rule {
            matcher,
            action,
            remaining: None,
            chance: Some((permille.min(1000), SmallRng::seed_from_u64(seed))),
        });
        self.state().armed.store(true, Ordering::Release);
    }

    /// How many faults the controller has applied so far, per kind.
    pub fn counts(&self) -> FaultCounts {
        self.state().counts.snapshot()
    }

    /// Fails the next `n` I/O commands with `status` (without executing them).
    pub fn fail_next(&self, n: u32, status: Status) {
        self.inject(CommandMatch::io(), FaultAction::Fail(status), Some(n));
    }

    /// Holds the completions of the next `n` I/O commands until released or aborted.
    pub fn hold_next(&self, n: u32) {
        self.inject(CommandMatch::io(), FaultAction::Hold, Some(n));
    }

    /// Delays the completions of the next `n` I/O commands by `delay`.
    pub fn delay_next(&self, n: u32, delay: Duration) {
        self.inject(CommandMatch::io(), FaultAction::Delay(delay), Some(n));
    }

    /// Never completes the next `n` I/O commands.
    pub fn drop_next(&self, n: u32) {
        self.inject(CommandMatch::io(), FaultAction::Drop, Some(n));
    }

    /// Posts the next `n` I/O completions with a command identifier nobody issued.
    pub fn wrong_cid_next(&self, n: u32) {
        self.inject(CommandMatch::io(), FaultAction::WrongCid, Some(n));
    }

    /// Posts the next `n` I/O completions with a nonexistent submission queue id.
    pub fn wrong_sqid_next(&self, n: u32) {
        self.inject(CommandMatch::io(), FaultAction::WrongSqid, Some(n));
    }

    /// Reads, Verifies and Compares touching `lbas` of namespace `nsid` fail with
    /// Unrecovered Read Error, until [`FaultControl::clear`].
    pub fn media_error(&self, nsid: u32, lbas: Range<u64>) {
        lock(&self.state().media).push((nsid, lbas));
        self.state().armed.store(true, Ordering::Release);
    }

    /// Reads of `lbas` of namespace `nsid` return data with the first byte of each block
    /// inverted, until [`FaultControl::clear`].
    pub fn corrupt_reads(&self, nsid: u32, lbas: Range<u64>) {
        lock(&self.state().corrupt).push((nsid, lbas));
        self.state().armed.store(true, Ordering::Release);
    }

    /// Sets CSTS.CFS as a controller that hit a fatal error; a reset clears it.
    pub fn raise_cfs(&self) {
        self.ctrl.regs.fatal();
    }

    /// Makes every register read return all ones and ignores writes (device removed),
    /// or, with `false`, brings the device back.
    pub fn set_device_gone(&self, gone: bool) {
        self.state().gone.store(gone, Ordering::Release);
    }

    /// Number of completions currently held back.
    pub fn held(&self) -> usize {
        lock(&self.state().held.list).len()
    }

    /// Posts every held completion now; returns how many.
    pub fn release_held(&self) -> usize {
        self.ctrl.release_held(|_| true)
    }

    /// Removes every rule and range (held completions stay held).
    pub fn clear(&self) {
        lock(&self.state().rules).clear();
        lock(&self.state().media).clear();
        lock(&self.state().corrupt).clear();
        self.state().rearm();
    }
}
