//! Discovery: the Discovery log page (70h) of a discovery controller, read the way
//! nvme-cli's `nvme discover` reads it (header first, then every record, again if
//! the generation counter moved meanwhile).

use std::time::{Duration, Instant};

use crate::spec::admin::GetLogPage;
use crate::spec::fabrics::{
    discovery_entries, DiscoveryEntry, DiscoveryHeader, PropertySize, DISCOVERY_ENTRY_SIZE,
    DISCOVERY_HEADER_SIZE, DISCOVERY_LOG_PAGE,
};
use crate::spec::log::LogPageId;
use crate::spec::registers::{offset, ShutdownNotification};
use crate::spec::Cc;
use crate::transport::Transport;
use crate::Error;

use super::{TcpName, TcpTransport};

/// What the transport saw go wrong, or that the target did not answer.
fn unanswered(t: &TcpTransport) -> String {
    t.failure()
        .unwrap_or_else(|| "the target did not answer".into())
}

/// How often a log whose generation counter changes while read is read again.
const READ_ATTEMPTS: usize = 10;

/// What a discovery controller lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryLog {
    /// The generation counter the records belong to.
    pub genctr: u64,
    /// The records: subsystems and referrals to other discovery controllers.
    pub entries: Vec<DiscoveryEntry>,
}

/// Connects to the discovery controller `name` names (a `tcp://HOST[:PORT]` name,
/// or any name: its subsystem NQN is ignored) and reads its Discovery log page.
pub fn discover(name: &TcpName, timeout: Duration) -> Result<DiscoveryLog, Error> {
    let name = TcpName {
        subnqn: None,
        kato: Duration::ZERO,
        ..name.clone()
    };
    let t = TcpTransport::connect(&name, timeout)?;
    let inner = &t.inner;
    let fail = |during: &'static str, reason: String| Error::Unreachable {
        device: inner.display.clone(),
        during,
        reason,
    };
    // CC: 64-byte SQEs, 16-byte CQEs, the NVM command set, 4 KiB pages, enabled.
    let cc = Cc::new()
        .with_en(true)
        .with_iosqes(crate::spec::command::SQE_SIZE_SHIFT)
        .with_iocqes(crate::spec::command::CQE_SIZE_SHIFT)
        .into_bits();
    if !inner.property_set(offset::CC as u32, PropertySize::Four, u64::from(cc)) {
        return Err(fail("enabling the discovery controller", unanswered(&t)));
    }
    hugepages::sync::lock(&inner.regs).cc = cc;
    let start = Instant::now();
    loop {
        match inner.property_get(offset::CSTS as u32, PropertySize::Four) {
            Some(v) if v & 1 == 1 => break,
            Some(v) if v & 2 == 2 => {
                return Err(fail(
                    "enabling the discovery controller",
                    "it reports a fatal status (CSTS.CFS)".into(),
                ))
            }
            Some(_) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(1)),
            Some(_) => {
                return Err(Error::Timeout {
                    device: inner.display.clone(),
                    what: "become ready (CSTS.RDY=1)",
                    waited: timeout,
                })
            }
            None => return Err(fail("enabling the discovery controller", unanswered(&t))),
        }
    }
    let read = |len: usize| -> Result<Vec<u8>, Error> {
        let mut glp = GetLogPage::new(LogPageId(DISCOVERY_LOG_PAGE), len as u64);
        glp.nsid = 0;
        let sqe = glp
            .to_sqe()
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let (cqe, data) = inner
            .admin_exec(sqe, &[], len)
            .map_err(|e| fail("reading the Discovery log page", e))?;
        if !cqe.status.is_success() {
            return Err(Error::CommandFailed {
                command: crate::error::CommandDesc::Admin {
                    name: "Get Log Page (Discovery)",
                    opcode: 0x02,
                },
                status: cqe.status.without_phase(),
            });
        }
        Ok(data)
    };
    let mut result = None;
    for _ in 0..READ_ATTEMPTS {
        let head = read(DISCOVERY_HEADER_SIZE)?;
        let h = DiscoveryHeader::parse(&head)
            .ok_or_else(|| fail("reading the Discovery log page", "short header".into()))?;
        // Bounded: a target claiming billions of records gets read up to 1024 of them.
        let n = h.numrec.min(1024) as usize;
        let page = read(DISCOVERY_HEADER_SIZE + n * DISCOVERY_ENTRY_SIZE)?;
        let again = DiscoveryHeader::parse(&page)
            .ok_or_else(|| fail("reading the Discovery log page", "short page".into()))?;
        if again.genctr == h.genctr {
            result = Some(DiscoveryLog {
                genctr: h.genctr,
                entries: discovery_entries(&page, again.numrec.min(n as u64)),
            });
            break;
        }
    }
    // Shutdown notification, then the connection closes with the transport.
    inner.property_set(
        offset::CC as u32,
        PropertySize::Four,
        u64::from(
            Cc::from_bits(cc)
                .with_shn(ShutdownNotification::Normal)
                .into_bits(),
        ),
    );
    result.ok_or_else(|| {
        fail(
            "reading the Discovery log page",
            format!("its generation counter changed on each of {READ_ATTEMPTS} reads"),
        )
    })
}
