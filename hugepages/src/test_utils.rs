//! Helpers for tests of the crates above (the `test-utils` feature).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    // Const-initialised and without a destructor, so reading it never allocates.
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// A global allocator that forwards to [`System`] and counts allocations, for tests
/// that check a path allocates nothing:
///
/// ```
/// use hugepages::test_utils::CountingAllocator;
///
/// #[global_allocator]
/// static GLOBAL: CountingAllocator = CountingAllocator::new();
///
/// let before = CountingAllocator::thread_allocations();
/// let v = vec![1u8; 16];
/// assert!(CountingAllocator::thread_allocations() > before);
/// assert!(GLOBAL.allocations() > 0);
/// # drop(v);
/// ```
#[derive(Debug, Default)]
pub struct CountingAllocator {
    allocations: AtomicU64,
}

impl CountingAllocator {
    /// An allocator that has counted nothing yet.
    pub const fn new() -> Self {
        CountingAllocator {
            allocations: AtomicU64::new(0),
        }
    }

    /// Allocations and reallocations so far, by every thread.
    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }

    /// Allocations and reallocations so far by the calling thread, through whichever
    /// `CountingAllocator` is the global allocator. Unlike [`allocations`], it does not
    /// see the test harness's own threads, which may allocate at any moment.
    ///
    /// [`allocations`]: CountingAllocator::allocations
    pub fn thread_allocations() -> u64 {
        THREAD_ALLOCATIONS.with(Cell::get)
    }

    fn count(&self) {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        THREAD_ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
