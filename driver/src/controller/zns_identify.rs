//! The Zoned Namespace Command Set's Identify pages at start-up: ZASL from Identify
//! Controller (CNS 06h, CSI 02h) and each zoned namespace's zone size and limits from
//! Identify Namespace (CNS 05h, CSI 02h), as Linux `nvme_query_zone_info` reads them.

use std::time::Duration;

use hugepages::DmaAllocator;

use crate::admin::AdminQueue;
use crate::spec::identify::{Cns, CommandSetId, IdentifyNamespace};
use crate::spec::zns::{IdentifyControllerZns, IdentifyNamespaceZns};
use crate::spec::Cap;
use crate::transport::Transport;
use crate::zns::ZonedInfo;
use crate::Error;

use super::bringup::{bad_data, identify_csi_page};

/// The controller's Zone Append Size Limit in bytes; `None` when ZASL is 0 (MDTS
/// applies) or the page cannot be read (then the device's answer to each append is
/// the authority, and a warning says so).
pub(super) fn controller_zasl<T: Transport>(
    t: &T,
    name: &str,
    q: &mut AdminQueue,
    alloc: &DmaAllocator,
    cap: Cap,
    timeout: Duration,
) -> Option<u64> {
    let cns = (Cns::IO_COMMAND_SET_CONTROLLER, CommandSetId::ZONED);
    let page = identify_csi_page(t, name, q, alloc, cns, 0, timeout)
        .and_then(|page| IdentifyControllerZns::parse(&page).map_err(|e| bad_data(name, e)));
    match page {
        Ok(id) => id.zone_append_limit_bytes(cap.min_page_size()),
        Err(e) => {
            tracing::warn!(device = %name, error = %e, "ZNS Identify Controller; Zone Append is limited by MDTS only");
            None
        }
    }
}

/// The zone geometry and limits of zoned namespace `nsid` (Identify data `id`).
pub(super) fn namespace<T: Transport>(
    t: &T,
    name: &str,
    q: &mut AdminQueue,
    alloc: &DmaAllocator,
    (nsid, id): (u32, &IdentifyNamespace),
    zasl_bytes: Option<u64>,
    timeout: Duration,
) -> Result<ZonedInfo, Error> {
    let cns = (Cns::IO_COMMAND_SET_NAMESPACE, CommandSetId::ZONED);
    let page = identify_csi_page(t, name, q, alloc, cns, nsid, timeout)?;
    let zns = IdentifyNamespaceZns::parse(&page).map_err(|e| bad_data(name, e))?;
    ZonedInfo::from_identify(&zns, id.flbas.index(), id.nsze, zasl_bytes)
        .map_err(|detail| bad_data(name, format!("namespace {nsid}: {detail}")))
}
