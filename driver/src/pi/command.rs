//! The protection information fields of a read or write command, and the error an
//! end-to-end check failure reported by the controller becomes.

use super::{PiCheck, Protection};
use crate::error::CommandDesc;
use crate::queue::IoOptions;
use crate::spec::{Status, SubmissionEntry};
use crate::Error;

/// Sets the command's expected initial reference tag (CDW14, and CDW3 for the 16-byte
/// tuple) and application tag and mask (CDW15) on a namespace with protection
/// information; commands on other namespaces are left as they are.
#[inline]
pub(crate) fn fill_command(
    sqe: &mut SubmissionEntry,
    p: Option<&Protection>,
    slba: u64,
    opts: &IoOptions,
) {
    if let Some(p) = p {
        sqe.set_initial_ref_tag(p.initial_ref_tag(slba, opts.ref_tag));
        sqe.set_app_tag(opts.app_tag, opts.app_tag_mask);
    }
}

/// The error of a command the controller completed with `status`: an end-to-end check
/// failure (SCT 2h, SC 82h to 84h) becomes [`Error::EndToEnd`], anything else
/// [`Error::CommandFailed`].
#[cold]
pub(crate) fn command_error(command: CommandDesc, status: Status, qid: u16, cid: u16) -> Error {
    match PiCheck::from_status(status) {
        Some(check) => Error::EndToEnd {
            command,
            check,
            status,
            lba: None,
            qid,
            cid,
        },
        None => Error::command_failed(command, status),
    }
}
