//! Who will open the VFIO nodes: user lookup in the password database and the
//! permission check on a device node.

use std::fs;

use super::iommu::Node;
use super::SetupError;

/// A user that should be able to open `/dev/vfio/<group>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Name, if the password database knows the uid.
    pub name: Option<String>,
    /// User id.
    pub uid: u32,
    /// Primary group, if known.
    pub gid: Option<u32>,
    /// Supplementary groups from `/etc/group`.
    pub groups: Vec<u32>,
}

impl User {
    /// Looks up `spec` (a user name or a numeric uid) in `/etc/passwd` and `/etc/group`.
    pub fn lookup(spec: &str) -> Result<User, SetupError> {
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        let entry = passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let uid: u32 = f.get(2)?.parse().ok()?;
            let gid: u32 = f.get(3)?.parse().ok()?;
            (f[0] == spec || uid.to_string() == spec).then(|| (f[0].to_string(), uid, gid))
        });
        let (name, uid, gid) = match (entry, spec.parse::<u32>()) {
            (Some((n, u, g)), _) => (Some(n), u, Some(g)),
            (None, Ok(uid)) => (None, uid, None),
            (None, Err(_)) => {
                return Err(SetupError::UnknownUser {
                    name: spec.to_string(),
                })
            }
        };
        let mut groups = Vec::new();
        if let Some(name) = &name {
            let group = fs::read_to_string("/etc/group").unwrap_or_default();
            for l in group.lines() {
                let f: Vec<&str> = l.split(':').collect();
                if let (Some(gid), Some(members)) = (f.get(2), f.get(3)) {
                    if members.split(',').any(|m| m == name) {
                        if let Ok(gid) = gid.parse() {
                            groups.push(gid);
                        }
                    }
                }
            }
        }
        Ok(User {
            name,
            uid,
            gid,
            groups,
        })
    }

    /// The user `nvme-setup` acts for when `--user` is absent: the one who ran `sudo`
    /// (`SUDO_UID`), else the effective user.
    pub fn invoking() -> Result<User, SetupError> {
        if let Ok(uid) = std::env::var("SUDO_UID") {
            if uid.parse::<u32>().is_ok() {
                return User::lookup(&uid);
            }
        }
        User::lookup(&effective_uid().unwrap_or(0).to_string())
    }

    /// Whether this user may open `node` for reading and writing.
    pub fn can_open(&self, node: &Node) -> bool {
        if self.uid == 0 {
            return true;
        }
        let bits = if node.uid == self.uid {
            node.mode >> 6
        } else if self.gid == Some(node.gid) || self.groups.contains(&node.gid) {
            node.mode >> 3
        } else {
            node.mode
        };
        bits & 0o6 == 0o6
    }

    /// The name or, failing that, the uid.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.uid.to_string())
    }
}

/// The effective uid of this process (`Uid:` in `/proc/self/status` of the real `/proc`).
pub fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn node(uid: u32, gid: u32, mode: u32) -> Node {
        Node {
            path: PathBuf::from("/dev/vfio/5"),
            uid,
            gid,
            mode,
        }
    }

    #[test]
    fn owner_group_and_other_bits_decide_access() {
        let u = User {
            name: Some("app".into()),
            uid: 1000,
            gid: Some(1000),
            groups: vec![36],
        };
        assert!(u.can_open(&node(1000, 0, 0o600)));
        assert!(!u.can_open(&node(0, 0, 0o600)));
        assert!(u.can_open(&node(0, 36, 0o660)));
        assert!(!u.can_open(&node(0, 36, 0o640)));
        assert!(u.can_open(&node(0, 0, 0o666)));
        // The owner class applies even when the group would allow it.
        assert!(!u.can_open(&node(1000, 1000, 0o460)));
    }

    #[test]
    fn numeric_uid_outside_the_password_database_is_accepted() {
        let u = User::lookup("4242424").unwrap();
        assert_eq!(u.uid, 4242424);
        assert_eq!(u.name, None);
    }

    #[test]
    fn unknown_user_name_is_an_error() {
        let e = User::lookup("no-such-user-xyz").unwrap_err();
        assert!(e.to_string().contains("unknown user 'no-such-user-xyz'"));
    }
}
