//! Page sizes: the base page of the MMU and the hugepage sizes the kernel offers.

use std::fmt;

/// A page size in bytes, always a power of two of at least 4 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageSize(u64);

impl PageSize {
    /// The 4 KiB base page of x86-64 and of most aarch64 kernels.
    pub const SIZE_4K: PageSize = PageSize(4 << 10);
    /// The 2 MiB hugepage (a PMD mapping on x86-64).
    pub const SIZE_2M: PageSize = PageSize(2 << 20);
    /// The 1 GiB hugepage (a PUD mapping on x86-64).
    pub const SIZE_1G: PageSize = PageSize(1 << 30);

    /// Returns the page size of `bytes`, or `None` unless it is a power of two of at
    /// least 4 KiB.
    pub const fn from_bytes(bytes: u64) -> Option<PageSize> {
        if bytes >= 4096 && bytes.is_power_of_two() {
            Some(PageSize(bytes))
        } else {
            None
        }
    }

    /// The base page size of this machine's MMU (`sysconf(_SC_PAGESIZE)`).
    pub fn base() -> PageSize {
        // SAFETY: sysconf has no memory-safety preconditions.
        let bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(bytes)
            .ok()
            .and_then(PageSize::from_bytes)
            .unwrap_or(PageSize::SIZE_4K)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The size in bytes as a `usize`.
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }

    /// The size in KiB, as sysfs names it (`hugepages-2048kB`).
    pub const fn kib(self) -> u64 {
        self.0 >> 10
    }

    /// log2 of the size: the value the kernel expects in the `MAP_HUGE_*` and
    /// `MFD_HUGE_*` flag bits.
    pub const fn shift(self) -> u32 {
        self.0.trailing_zeros()
    }

    /// Rounds `len` up to a multiple of this page size; `None` on overflow.
    pub const fn round_up(self, len: usize) -> Option<usize> {
        let mask = self.as_usize() - 1;
        match len.checked_add(mask) {
            Some(v) => Some(v & !mask),
            None => None,
        }
    }

    /// The short name the kernel command line uses: `4K`, `2M`, `1G`.
    pub fn short_name(self) -> String {
        let b = self.0;
        if b % (1 << 30) == 0 {
            format!("{}G", b >> 30)
        } else if b % (1 << 20) == 0 {
            format!("{}M", b >> 20)
        } else {
            format!("{}K", b >> 10)
        }
    }

    /// Parses a size such as `2M`, `1G`, `2048k`, `2048kB` or `1024M` (the forms used
    /// by `/proc/mounts` and the kernel command line), in either case. A bare number
    /// counts bytes.
    pub fn parse(text: &str) -> Option<PageSize> {
        let lower = text.trim().to_ascii_lowercase();
        // The kernel's forms only: a K, M or G unit with an optional B, no T and no iB.
        let unit = lower.strip_suffix('b').unwrap_or(&lower);
        if !unit.ends_with(|c: char| c.is_ascii_digit() || matches!(c, 'k' | 'm' | 'g')) {
            return None;
        }
        PageSize::from_bytes(parse_size(unit)?)
    }
}

/// Parses a byte count with an optional binary unit: `4096`, `4K`, `64m`, `4G`, `2T`,
/// `1GiB`, `4KB` (K, M, G, T in either case, optionally followed by `B` or `iB`).
/// `None` if malformed or beyond `u64`.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 10),
        'm' | 'M' => (&t[..t.len() - 1], 20),
        'g' | 'G' => (&t[..t.len() - 1], 30),
        't' | 'T' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

impl fmt::Display for PageSize {
    /// Prints the size the way people say it: `4 KiB`, `2 MiB`, `1 GiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 30 && b % (1 << 30) == 0 {
            write!(f, "{} GiB", b >> 30)
        } else if b >= 1 << 20 && b % (1 << 20) == 0 {
            write!(f, "{} MiB", b >> 20)
        } else {
            write!(f, "{} KiB", b >> 10)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_mount_and_cmdline_forms() {
        assert_eq!(PageSize::parse("2M"), Some(PageSize::SIZE_2M));
        assert_eq!(PageSize::parse("1G"), Some(PageSize::SIZE_1G));
        assert_eq!(PageSize::parse("1024M"), Some(PageSize::SIZE_1G));
        assert_eq!(PageSize::parse("2048kB"), Some(PageSize::SIZE_2M));
        assert_eq!(PageSize::parse("4096"), Some(PageSize::SIZE_4K));
        assert_eq!(PageSize::parse("3M"), None);
        assert_eq!(PageSize::parse("M"), None);
        assert_eq!(PageSize::parse(""), None);
    }

    #[test]
    fn page_size_parse_keeps_to_the_kernel_forms() {
        assert_eq!(PageSize::parse(" 2mb "), Some(PageSize::SIZE_2M));
        assert_eq!(PageSize::parse("1T"), None);
        assert_eq!(PageSize::parse("2MiB"), None);
        assert_eq!(PageSize::parse("2bb"), None);
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("2T"), Some(2 << 40));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("4KB"), Some(4096));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("16777216T"), None);
    }

    #[test]
    fn display_uses_binary_units() {
        assert_eq!(PageSize::SIZE_4K.to_string(), "4 KiB");
        assert_eq!(PageSize::SIZE_2M.to_string(), "2 MiB");
        assert_eq!(PageSize::SIZE_1G.to_string(), "1 GiB");
    }

    #[test]
    fn round_up_and_shift_match_the_size() {
        assert_eq!(PageSize::SIZE_2M.round_up(1), Some(2 << 20));
        assert_eq!(PageSize::SIZE_2M.round_up(2 << 20), Some(2 << 20));
        assert_eq!(PageSize::SIZE_2M.round_up(0), Some(0));
        assert_eq!(PageSize::SIZE_2M.round_up(usize::MAX), None);
        assert_eq!(PageSize::SIZE_2M.shift(), 21);
        assert_eq!(PageSize::SIZE_1G.shift(), 30);
        assert_eq!(PageSize::SIZE_2M.kib(), 2048);
    }
}
