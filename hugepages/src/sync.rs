//! The one way this stack takes a mutex.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking the guard even when a thread panicked while holding it.
///
/// The mutexes of this stack guard bookkeeping (free lists, queue slots, fault rules,
/// logs) that every critical section leaves consistent before anything can unwind, so a
/// poisoned lock holds no broken invariant; refusing it would turn one panic (a test
/// assertion, a caller's callback) into the failure of every later command.
#[inline]
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
