//! Error Information and SMART / Health state: the error log, media errors, power
//! cycles and shutdowns (Get Log Page 01h and 02h report them).

use std::collections::VecDeque;

use nvme_spec::{Status, SubmissionEntry};

use crate::controller::{io_lbas, Ctrl};
use crate::identify::{ErrorEntry, ELPE};
use hugepages::sync::lock;

/// What the error and health log pages report; kept across controller resets.
pub(crate) struct Health {
    /// The newest `ELPE + 1` error entries, oldest first.
    pub errors: VecDeque<ErrorEntry>,
    /// Errors recorded since power-on (each entry's Error Count).
    pub error_count: u64,
    pub media_errors: u64,
    pub power_cycles: u64,
    pub unsafe_shutdowns: u64,
    /// Set when the host notified a shutdown (CC.SHN) since the controller was last
    /// enabled: a power cut now is not an unsafe shutdown.
    pub clean_shutdown: bool,
}

impl Health {
    /// Power-on values: the first power cycle, nothing recorded.
    pub(crate) fn new() -> Self {
        Self {
            errors: VecDeque::new(),
            error_count: 0,
            media_errors: 0,
            power_cycles: 1,
            unsafe_shutdowns: 0,
            clean_shutdown: false,
        }
    }
}

impl Ctrl {
    /// Adds an Error Information entry for a command that failed with `status`; `lba`
    /// names the failing block when the command knows it, else its first LBA is used.
    pub(crate) fn record_error(
        &self,
        qid: u16,
        sqe: &SubmissionEntry,
        status: Status,
        lba: Option<u64>,
    ) {
        let mut health = lock(&self.health);
        health.error_count += 1;
        let entry = ErrorEntry {
            count: health.error_count,
            sqid: qid,
            cid: sqe.cid(),
            status: status.without_phase(),
            lba: lba.unwrap_or_else(|| io_lbas(qid, sqe).map_or(0, |r| r.start)),
            nsid: sqe.nsid,
        };
        if status.sct() == nvme_spec::StatusCodeType::MediaAndDataIntegrity {
            health.media_errors += 1;
        }
        health.errors.push_back(entry);
        if health.errors.len() > usize::from(ELPE) + 1 {
            health.errors.pop_front();
        }
    }
}
