//! `nvme-identify tcp://HOST[:PORT]`: a discovery controller's Discovery log page,
//! printed as `nvme discover` prints it (JSON under the same names).

use std::fmt::Write;

use nvme::spec::fabrics::DiscoveryEntry;
use nvme::transport::tcp::{discover, TcpName};
use serde::Serialize;

use crate::cli::ToolError;

/// The Discovery log page as `nvme discover -o json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoveryReport {
    /// Generation counter.
    pub genctr: u64,
    /// One per subsystem port (and referral).
    pub records: Vec<DiscoveryRecord>,
}

/// One Discovery log entry under nvme-cli's names.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoveryRecord {
    /// Transport type (`tcp`, `rdma`, `fc`, `loop`).
    pub trtype: String,
    /// Address family (`ipv4`, `ipv6`, ...).
    pub adrfam: String,
    /// Subsystem type (`nvme subsystem`, `current discovery subsystem`, ...).
    pub subtype: String,
    /// Transport requirements.
    pub treq: String,
    /// Port ID.
    pub portid: u16,
    /// Transport service ID (the TCP port).
    pub trsvcid: String,
    /// Subsystem NQN.
    pub subnqn: String,
    /// Transport address.
    pub traddr: String,
    /// Controller ID (65535: dynamic).
    pub cntlid: u16,
    /// Largest admin queue.
    pub asqsz: u16,
    /// Entry flags.
    pub eflags: u16,
    /// TCP security type.
    pub sectype: String,
}

impl From<&DiscoveryEntry> for DiscoveryRecord {
    fn from(e: &DiscoveryEntry) -> Self {
        DiscoveryRecord {
            trtype: e.trtype_name().into(),
            adrfam: e.adrfam_name().into(),
            subtype: e.subtype_name().into(),
            treq: e.treq_name(),
            portid: e.portid,
            trsvcid: e.trsvcid.clone(),
            subnqn: e.subnqn.clone(),
            traddr: e.traddr.clone(),
            cntlid: e.cntlid,
            asqsz: e.asqsz,
            eflags: e.eflags,
            sectype: e.sectype_name().into(),
        }
    }
}

/// Reads the Discovery log of the discovery controller `name` names.
pub fn run(name: &TcpName) -> Result<DiscoveryReport, ToolError> {
    let log = discover(name, nvme::Options::default().admin_timeout)?;
    Ok(DiscoveryReport {
        genctr: log.genctr,
        records: log.entries.iter().map(DiscoveryRecord::from).collect(),
    })
}

/// The report as nvme-cli's text output.
pub fn render(r: &DiscoveryReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Discovery Log Number of Records {}, Generation counter {}",
        r.records.len(),
        r.genctr
    );
    for (i, e) in r.records.iter().enumerate() {
        let _ = writeln!(s, "=====Discovery Log Entry {i}======");
        let _ = writeln!(s, "trtype:  {}", e.trtype);
        let _ = writeln!(s, "adrfam:  {}", e.adrfam);
        let _ = writeln!(s, "subtype: {}", e.subtype);
        let _ = writeln!(s, "treq:    {}", e.treq);
        let _ = writeln!(s, "portid:  {}", e.portid);
        let _ = writeln!(s, "trsvcid: {}", e.trsvcid);
        let _ = writeln!(s, "subnqn:  {}", e.subnqn);
        let _ = writeln!(s, "traddr:  {}", e.traddr);
        let _ = writeln!(s, "eflags:  {:#x}", e.eflags);
        let _ = writeln!(s, "sectype: {}", e.sectype);
    }
    s
}
