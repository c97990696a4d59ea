//! The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), for CPU cost per I/O.

/// CPU time the calling thread has used, in nanoseconds (0 if the clock is missing).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that lives across the call, and
    // CLOCK_THREAD_CPUTIME_ID is a clock id every Linux kernel since 2.6.12 accepts;
    // on failure the kernel leaves `ts` untouched and we report 0.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_grows_with_work() {
        let before = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        std::hint::black_box(x);
        assert!(thread_cpu_ns() > before);
    }
}
