//! Naming the LBA of an end-to-end protection information error from the
//! controller's Error Information log.

use crate::transport::Transport;
use crate::Error;

use super::IoQueuePair;

impl<T: Transport, C: Copy + Default> IoQueuePair<T, C> {
    /// Fills in the failing LBA of an [`Error::EndToEnd`] from the controller's Error
    /// Information log (an admin command: call it off the I/O path, soon after the
    /// completion, before the command id is reused); any other error, or one the log
    /// does not explain, is returned as it is. The blocking calls (`read_sync`,
    /// `write_sync`) do this themselves.
    ///
    /// The log is untrusted: an entry counts only if it names this queue, the
    /// command's id and the same status, and its LBA lies in the command's range.
    pub fn locate_end_to_end_error(&self, e: Error) -> Error {
        let Error::EndToEnd {
            command,
            check,
            status,
            lba: None,
            qid,
            cid,
        } = e
        else {
            return e;
        };
        let crate::CommandDesc::Io { slba, blocks, .. } = command else {
            return e;
        };
        let entries = match self.shared.error_log(usize::MAX) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::warn!(qid, cid, error = %err, "reading the Error Information log failed");
                return e;
            }
        };
        let range = slba..slba.saturating_add(u64::from(blocks));
        let lba = entries
            .iter()
            .filter(|x| {
                x.error_count != 0
                    && x.sqid == qid
                    && x.cid == cid
                    && x.status.code_only() == status.code_only()
                    && range.contains(&x.lba)
            })
            .max_by_key(|x| x.error_count)
            .map(|x| x.lba);
        Error::EndToEnd {
            command,
            check,
            status,
            lba,
            qid,
            cid,
        }
    }
}
