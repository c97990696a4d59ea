//! The CPU's time-stamp counter: the cheapest clock a polling thread can read
//! (`spdk_get_ticks()` in SPDK's environment layer).

/// The time-stamp counter (RDTSC), or `None` on an architecture without one.
///
/// Its rate is constant on CPUs with an invariant TSC (every x86-64 CPU of the last
/// decade); calibrate it against a wall clock before converting ticks to time.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn tsc() -> Option<u64> {
    // SAFETY: RDTSC has no memory effects and every x86_64 CPU implements it; a kernel
    // that forbids it in user mode (CR4.TSD) would fault, which no Linux default does.
    Some(unsafe { core::arch::x86_64::_rdtsc() })
}

/// The time-stamp counter, or `None` on an architecture without one.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn tsc() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_counter_advances() {
        let a = tsc().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1));
        assert!(tsc().unwrap() > a);
    }
}
