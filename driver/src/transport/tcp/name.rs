//! `tcp://` device names and the host's identity (host NQN and host ID).

use std::fmt;
use std::time::Duration;

use crate::spec::fabrics::{DISCOVERY_NQN, NQN_MAX};
use crate::spec::tcp::DEFAULT_PORT;
use crate::Error;

/// The Keep Alive Timeout asked for by default (Linux `NVME_DEFAULT_KATO`).
pub const DEFAULT_KATO: Duration = Duration::from_secs(5);

/// A parsed `tcp://HOST[:PORT][/NQN][,option=value...]` device name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpName {
    /// Host name or IP address of the target (IPv6 without brackets).
    pub host: String,
    /// TCP port (4420 by default).
    pub port: u16,
    /// The subsystem NQN; `None` names the discovery controller.
    pub subnqn: Option<String>,
    /// `hostnqn=`: the host NQN (by default as nvme-cli finds or derives it).
    pub hostnqn: Option<String>,
    /// `hostid=`: the host identifier, a UUID.
    pub hostid: Option<[u8; 16]>,
    /// `kato=MS`: the Keep Alive Timeout asked for; 0 disables Keep Alive.
    pub kato: Duration,
    /// `hdgst=on`: header digests.
    pub header_digest: bool,
    /// `ddgst=on`: data digests.
    pub data_digest: bool,
    /// `disable_sqflow=on`: I/O queues connect with SQ flow control disabled (CATTR
    /// bit 2, nvme-cli's `--disable-sqflow`); the target may then complete reads with
    /// a C2HData SUCCESS flag instead of a Response Capsule.
    pub disable_sqflow: bool,
}

impl TcpName {
    /// Whether `name` is a `tcp://` name (well formed or not).
    pub fn is_tcp(name: &str) -> bool {
        name.starts_with("tcp://")
    }

    /// The subsystem NQN Connect asks for (the discovery NQN when none was named).
    pub fn subsystem(&self) -> &str {
        self.subnqn.as_deref().unwrap_or(DISCOVERY_NQN)
    }

    /// `HOST:PORT`, bracketing an IPv6 address.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Parses a device name; the error says what is wrong and what is expected.
    pub fn parse(name: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::BadTcpName {
            name: name.to_string(),
            reason,
        };
        let rest = name
            .strip_prefix("tcp://")
            .ok_or_else(|| bad("it does not start with tcp://".into()))?;
        let (target, options) = match rest.split_once(',') {
            Some((t, o)) => (t, Some(o)),
            None => (rest, None),
        };
        let (authority, nqn) = match target.split_once('/') {
            Some((a, n)) => (a, Some(n)),
            None => (target, None),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address is missing its closing ']'".into()))?;
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(p.strip_prefix(':').ok_or_else(|| {
                        bad(format!("'{p}' after the IPv6 address is not :PORT"))
                    })?),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is empty".into()));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:%".contains(&b))
        {
            return Err(bad(format!("'{host}' is not a host name or IP address")));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(bad(format!("port '{p}' is not a number from 1 to 65535"))),
            },
        };
        let subnqn = match nqn {
            None | Some("") => None,
            Some(n) => {
                check_nqn(n).map_err(|r| bad(format!("subsystem NQN: {r}")))?;
                Some(n.to_string())
            }
        };
        let mut out = TcpName {
            host: host.to_string(),
            port,
            subnqn,
            hostnqn: None,
            hostid: None,
            kato: DEFAULT_KATO,
            header_digest: false,
            data_digest: false,
            disable_sqflow: false,
        };
        for opt in options.into_iter().flat_map(|o| o.split(',')) {
            let (key, value) = opt
                .split_once('=')
                .ok_or_else(|| bad(format!("option '{opt}' is not key=value")))?;
            let on_off = |v: &str| match v {
                "on" | "1" | "true" => Ok(true),
                "off" | "0" | "false" => Ok(false),
                _ => Err(bad(format!("{key}={v}: expected on or off"))),
            };
            match key {
                "hostnqn" => {
                    check_nqn(value).map_err(|r| bad(format!("hostnqn: {r}")))?;
                    out.hostnqn = Some(value.to_string());
                }
                "hostid" => {
                    out.hostid = Some(
                        parse_uuid(value)
                            .ok_or_else(|| bad(format!("hostid '{value}' is not a UUID")))?,
                    )
                }
                "kato" => {
                    let ms: u32 = value.parse().map_err(|_| {
                        bad(format!("kato={value}: expected milliseconds (0 disables)"))
                    })?;
                    out.kato = Duration::from_millis(u64::from(ms));
                }
                "hdgst" => out.header_digest = on_off(value)?,
                "ddgst" => out.data_digest = on_off(value)?,
                "disable_sqflow" => out.disable_sqflow = on_off(value)?,
                _ => {
                    return Err(bad(format!(
                    "unknown option '{key}' (hostnqn, hostid, kato, hdgst, ddgst, disable_sqflow)"
                )))
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for TcpName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp://{}", self.address())?;
        if let Some(n) = &self.subnqn {
            write!(f, "/{n}")?;
        }
        Ok(())
    }
}

fn check_nqn(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > NQN_MAX {
        return Err(format!("{} bytes; an NQN is 1 to {NQN_MAX}", n.len()));
    }
    if n.bytes()
        .any(|b| b.is_ascii_control() || b == b',' || b == b' ')
    {
        return Err("it holds a control character, space or comma".into());
    }
    Ok(())
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (or 32 hex digits).
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let dashes: Vec<usize> = s.match_indices('-').map(|(i, _)| i).collect();
    if !dashes.is_empty() && dashes != [8, 13, 18, 23] {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn format_uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The host's NQN and ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// Host NQN.
    pub nqn: String,
    /// Host identifier.
    pub id: [u8; 16],
}

/// Files the default identity comes from, replaceable in tests.
#[derive(Debug, Clone)]
pub struct IdentitySources {
    /// nvme-cli's host NQN file (`/etc/nvme/hostnqn`).
    pub hostnqn_file: std::path::PathBuf,
    /// nvme-cli's host ID file (`/etc/nvme/hostid`).
    pub hostid_file: std::path::PathBuf,
    /// The machine's DMI product UUID.
    pub product_uuid: std::path::PathBuf,
    /// The systemd machine ID.
    pub machine_id: std::path::PathBuf,
}

impl Default for IdentitySources {
    fn default() -> Self {
        Self {
            hostnqn_file: "/etc/nvme/hostnqn".into(),
            hostid_file: "/etc/nvme/hostid".into(),
            product_uuid: "/sys/class/dmi/id/product_uuid".into(),
            machine_id: "/etc/machine-id".into(),
        }
    }
}

impl HostIdentity {
    /// The identity for `name`: its `hostnqn=`/`hostid=` options, else nvme-cli's files
    /// (`/etc/nvme/hostnqn`, `/etc/nvme/hostid`), else one derived from the machine's
    /// DMI product UUID or machine ID as `nqn.2014-08.org.nvmexpress:uuid:UUID`, the
    /// form `nvme gen-hostnqn` writes. Stable across runs on one machine.
    pub fn resolve(name: &TcpName, sources: &IdentitySources) -> Self {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let machine_uuid = || -> [u8; 16] {
            if let Some(u) = read(&sources.product_uuid).and_then(|s| parse_uuid(&s)) {
                if u != [0; 16] && u != [0xff; 16] {
                    return u;
                }
            }
            if let Some(u) = read(&sources.machine_id).and_then(|s| parse_uuid(&s)) {
                return u;
            }
            // No machine identity at all: a fixed UUID derived from the host name.
            let host = read(std::path::Path::new("/proc/sys/kernel/hostname")).unwrap_or_default();
            let mut u = [0u8; 16];
            let a = crate::spec::tcp::digest(host.as_bytes()).to_le_bytes();
            let b = crate::spec::tcp::digest(format!("{host}-nvme").as_bytes()).to_le_bytes();
            u[..4].copy_from_slice(&a);
            u[4..8].copy_from_slice(&b);
            u
        };
        let nqn = name
            .hostnqn
            .clone()
            .or_else(|| read(&sources.hostnqn_file).filter(|n| check_nqn(n).is_ok()))
            .unwrap_or_else(|| {
                format!(
                    "nqn.2014-08.org.nvmexpress:uuid:{}",
                    format_uuid(&machine_uuid())
                )
            });
        let id = name
            .hostid
            .or_else(|| read(&sources.hostid_file).and_then(|s| parse_uuid(&s)))
            .or_else(|| nqn.rsplit_once(":uuid:").and_then(|(_, u)| parse_uuid(u)))
            .unwrap_or_else(machine_uuid);
        HostIdentity { nqn, id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_defaults() {
        let n = TcpName::parse("tcp://127.0.0.1/nqn.2026-12.io.test:a").unwrap();
        assert_eq!(n.host, "127.0.0.1");
        assert_eq!(n.port, 4420);
        assert_eq!(n.subnqn.as_deref(), Some("nqn.2026-12.io.test:a"));
        assert_eq!(n.kato, DEFAULT_KATO);
        assert_eq!(n.to_string(), "tcp://127.0.0.1:4420/nqn.2026-12.io.test:a");
        let d = TcpName::parse("tcp://[::1]:8009").unwrap();
        assert_eq!(
            (d.host.as_str(), d.port, d.subnqn.clone()),
            ("::1", 8009, None)
        );
        assert_eq!(d.subsystem(), DISCOVERY_NQN);
        assert_eq!(d.address(), "[::1]:8009");
        let o = TcpName::parse(
            "tcp://h:1/n,hostnqn=nqn.x:y,hostid=00112233-4455-6677-8899-aabbccddeeff,kato=250,hdgst=on,ddgst=on",
        )
        .unwrap();
        assert_eq!(o.hostnqn.as_deref(), Some("nqn.x:y"));
        assert_eq!(o.hostid.unwrap()[15], 0xff);
        assert_eq!(o.kato, Duration::from_millis(250));
        assert!(o.header_digest && o.data_digest);
    }

    #[test]
    fn bad_names_say_why() {
        for (name, why) in [
            ("tcp://", "host is empty"),
            ("tcp://h:0/n", "port '0'"),
            ("tcp://h:99999/n", "port '99999'"),
            ("tcp://h/n,kato=x", "milliseconds"),
            ("tcp://h/n,foo=1", "unknown option"),
            ("tcp://h/n,hostid=12", "not a UUID"),
            ("tcp://[::1/n", "closing"),
            ("tcp://h h/n", "not a host name"),
        ] {
            let e = TcpName::parse(name).unwrap_err().to_string();
            assert!(e.contains(why), "{name}: {e}");
        }
        let long = format!("tcp://h/{}", "n".repeat(224));
        assert!(TcpName::parse(&long).is_err());
    }

    #[test]
    fn identity_prefers_options_then_files_then_machine() {
        let dir = tempfile::tempdir().unwrap();
        let src = IdentitySources {
            hostnqn_file: dir.path().join("hostnqn"),
            hostid_file: dir.path().join("hostid"),
            product_uuid: dir.path().join("product_uuid"),
            machine_id: dir.path().join("machine-id"),
        };
        std::fs::write(&src.machine_id, "0123456789abcdef0123456789abcdef\n").unwrap();
        let n = TcpName::parse("tcp://h/n").unwrap();
        let id = HostIdentity::resolve(&n, &src);
        assert_eq!(
            id.nqn,
            "nqn.2014-08.org.nvmexpress:uuid:01234567-89ab-cdef-0123-456789abcdef"
        );
        assert_eq!(id.id[0], 0x01);
        assert_eq!(HostIdentity::resolve(&n, &src), id, "stable");
        std::fs::write(
            &src.hostnqn_file,
            "nqn.2014-08.org.nvmexpress:uuid:ffffffff-0000-0000-0000-000000000001\n",
        )
        .unwrap();
        let id = HostIdentity::resolve(&n, &src);
        assert!(id.nqn.ends_with("0001"));
        assert_eq!(id.id[15], 1, "the host ID follows the NQN's UUID");
        let o = TcpName::parse("tcp://h/n,hostnqn=nqn.a:b").unwrap();
        assert_eq!(HostIdentity::resolve(&o, &src).nqn, "nqn.a:b");
    }
}
