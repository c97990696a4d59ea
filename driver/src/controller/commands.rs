//! Admin commands offered to users of the controller: identify, features, log pages,
//! abort, asynchronous events.

use crate::admin::AsyncEvent;
use crate::dma::DmaMem;
use crate::spec::features::FeatureId;
use crate::spec::identify::Cns;
use crate::spec::log::LogPageId;
use crate::spec::SubmissionEntry;
use crate::transport::Transport;

use super::Shared;

/// Admin commands offered to users of the controller.
impl<T: Transport> crate::Controller<T> {
    /// Sets the callback that receives asynchronous events (called from whichever thread
    /// polls the admin queue: [`crate::Controller::poll_admin`] or any admin command).
    pub fn set_async_event_callback(&self, f: impl FnMut(AsyncEvent) + Send + 'static) {
        *hugepages::sync::lock(&self.shared.aen) = Some(Box::new(f));
    }

    /// Polls the admin completion queue once; asynchronous events found there go to the
    /// callback. Call it now and then when events matter: nothing else polls for them.
    pub fn poll_admin(&self) -> usize {
        self.shared.poll_admin()
    }

    /// Runs an admin command without data and returns completion dword 0.
    pub fn admin_command(&self, sqe: SubmissionEntry) -> Result<u32, crate::Error> {
        let timeout = self.shared.options.admin_timeout;
        self.shared.admin_exec(sqe, timeout).map(|c| c.dw0)
    }

    /// Runs an admin command that transfers `len` bytes from the controller, returning them.
    pub fn admin_read(&self, sqe: SubmissionEntry, len: usize) -> Result<Vec<u8>, crate::Error> {
        self.shared.admin_read(sqe, len)
    }

    /// Identify with CNS `cns` for `nsid`: the raw 4096-byte page. A CNS value the spec
    /// crate does not name is `Cns(value)`.
    pub fn identify(&self, cns: Cns, nsid: u32) -> Result<Vec<u8>, crate::Error> {
        let sqe = crate::spec::admin::Identify {
            cns,
            nsid,
            cntid: 0,
            csi: 0,
        }
        .to_sqe();
        self.admin_read(sqe, 4096)
    }

    /// Get Features `fid` (current value) with `cdw11`; returns completion dword 0. A
    /// vendor-specific feature is `FeatureId(value)`.
    pub fn get_features(&self, fid: FeatureId, cdw11: u32) -> Result<u32, crate::Error> {
        let mut sqe = crate::spec::admin::GetFeatures::current(fid).to_sqe();
        sqe.cdw11 = cdw11;
        self.admin_command(sqe)
    }

    /// Set Features `fid` to `value` (CDW11); returns completion dword 0.
    pub fn set_features(
        &self,
        fid: FeatureId,
        value: u32,
        save: bool,
    ) -> Result<u32, crate::Error> {
        let set = crate::spec::admin::SetFeatures {
            save,
            ..crate::spec::admin::SetFeatures::new(fid, value)
        };
        self.admin_command(set.to_sqe())
    }

    /// Get Log Page `lid` for `nsid`, `len` bytes (a multiple of 4) from byte 0. A
    /// vendor-specific log page is `LogPageId(value)`.
    pub fn get_log_page(
        &self,
        lid: LogPageId,
        nsid: u32,
        len: usize,
    ) -> Result<Vec<u8>, crate::Error> {
        let sqe = crate::spec::admin::GetLogPage {
            nsid,
            ..crate::spec::admin::GetLogPage::new(lid, len as u64)
        }
        .to_sqe()
        .map_err(|e| crate::Error::InvalidRequest(e.to_string()))?;
        self.admin_read(sqe, len)
    }

    /// The SMART / Health Information log (log page 02h, controller wide).
    pub fn smart_log(&self) -> Result<crate::spec::SmartLog, crate::Error> {
        let page =
            self.get_log_page(LogPageId::SMART_HEALTH, crate::spec::command::NSID_ALL, 512)?;
        crate::spec::SmartLog::parse(&page).map_err(|e| crate::Error::BadDeviceData {
            device: self.name().to_string(),
            detail: e.to_string(),
        })
    }

    /// The Error Information log (log page 01h), `entries` entries of 64 bytes.
    pub fn error_log(
        &self,
        entries: usize,
    ) -> Result<Vec<crate::spec::ErrorLogEntry>, crate::Error> {
        self.shared.error_log(entries)
    }

    /// Abort command `cid` on submission queue `sqid`; returns whether the controller
    /// says it aborted it.
    pub fn abort(&self, sqid: u16, cid: u16) -> Result<bool, crate::Error> {
        self.shared.abort(sqid, cid)
    }
}

/// One PRP list page for an admin transfer.
struct OnePage<'a>(&'a mut DmaMem);

impl crate::queue::prp::ListPages for OnePage<'_> {
    fn page_count(&self) -> usize {
        1
    }
    fn page_iova(&self, _page: usize) -> u64 {
        self.0.iova()
    }
    fn write_entry(&mut self, _page: usize, slot: usize, value: u64) -> Result<(), crate::Error> {
        self.0.write_u64(slot * 8, value)
    }
}

impl<T: Transport> Shared<T> {
    /// Runs an admin command that transfers `len` bytes from the controller, returning them.
    pub(crate) fn admin_read(
        &self,
        mut sqe: SubmissionEntry,
        len: usize,
    ) -> Result<Vec<u8>, crate::Error> {
        let ps = self.page_size as usize;
        let buf = DmaMem::alloc(&self.alloc, len.max(4), ps, "admin data")?;
        let mut list = DmaMem::alloc(&self.alloc, ps, ps, "an admin PRP list")?;
        if self.t.sgl_only() {
            // One contiguous buffer: one Data Block descriptor.
            let desc = crate::spec::sgl::SglDescriptor::data_block(buf.iova(), len as u32);
            sqe.set_sgl(desc, crate::spec::command::Psdt::SglMptrContiguous);
        } else {
            let seg = buf.buffer().as_segment();
            let (prp1, prp2) =
                crate::queue::prp::build(&[seg], ps as u64, &mut OnePage(&mut list))?;
            sqe.set_prp(prp1, prp2);
        }
        let timeout = self.options.admin_timeout;
        if let Err(e) = self.admin_exec(sqe, timeout) {
            if matches!(e, crate::Error::CommandTimedOut { .. }) {
                // The controller may still write these pages: never hand them out again.
                std::mem::forget(buf);
                std::mem::forget(list);
            }
            return Err(e);
        }
        let mut out = vec![0u8; len];
        buf.buffer()
            .read(0, &mut out)
            .map_err(|source| crate::Error::Dma {
                what: "admin data",
                source,
            })?;
        Ok(out)
    }

    /// The Error Information log (log page 01h), `entries` entries of 64 bytes (at
    /// least one, at most the ELPE + 1 the controller keeps).
    pub(crate) fn error_log(
        &self,
        entries: usize,
    ) -> Result<Vec<crate::spec::ErrorLogEntry>, crate::Error> {
        let n = entries.clamp(1, usize::from(self.info().identify.error_log_entries()));
        let sqe = crate::spec::admin::GetLogPage {
            nsid: 0,
            ..crate::spec::admin::GetLogPage::new(LogPageId::ERROR_INFORMATION, (n * 64) as u64)
        }
        .to_sqe()
        .map_err(|e| crate::Error::InvalidRequest(e.to_string()))?;
        let page = self.admin_read(sqe, n * 64)?;
        page.chunks_exact(64)
            .map(|c| {
                crate::spec::ErrorLogEntry::parse(c).map_err(|e| crate::Error::BadDeviceData {
                    device: self.name.clone(),
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    /// Sends Abort for (`sqid`, `cid`); true when completion dword 0 bit 0 is clear.
    pub fn abort(&self, sqid: u16, cid: u16) -> Result<bool, crate::Error> {
        let sqe = crate::spec::admin::Abort { sqid, cid }.to_sqe();
        let timeout = self.options.abort_timeout;
        self.admin_exec(sqe, timeout)
            .map(|c| crate::spec::admin::Abort::aborted(c.dw0))
    }
}
