//! The controller's life-cycle state, shared with its queue pairs.

use std::sync::atomic::{AtomicU8, Ordering};

/// Where a controller is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum ControllerState {
    /// Up and usable.
    Live = 0,
    /// A reset is in progress.
    Resetting = 1,
    /// Bring-up or reset failed; only a new reset can help.
    Failed = 2,
    /// Shut down (the `Controller` was dropped or `shutdown` called).
    ShutDown = 3,
    /// The device is gone (registers read all ones: surprise removal); every call fails
    /// with [`crate::Error::DeviceGone`] and no reset is tried.
    Gone = 4,
}

impl ControllerState {
    const fn from_u8(v: u8) -> Self {
        match v {
            0 => ControllerState::Live,
            1 => ControllerState::Resetting,
            2 => ControllerState::Failed,
            4 => ControllerState::Gone,
            _ => ControllerState::ShutDown,
        }
    }
}

/// A [`ControllerState`] that the controller and its queue pairs read and change.
#[derive(Debug)]
pub(crate) struct AtomicState(AtomicU8);

impl AtomicState {
    pub fn new(state: ControllerState) -> Self {
        AtomicState(AtomicU8::new(state as u8))
    }

    #[inline]
    pub fn load(&self, order: Ordering) -> ControllerState {
        ControllerState::from_u8(self.0.load(order))
    }

    pub fn swap(&self, state: ControllerState, order: Ordering) -> ControllerState {
        ControllerState::from_u8(self.0.swap(state as u8, order))
    }

    /// Marks the device gone unless it was shut down; returns whether this call did it
    /// (false when it was already gone or shut down).
    pub fn mark_gone(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                let s = ControllerState::from_u8(v);
                (s != ControllerState::Gone && s != ControllerState::ShutDown)
                    .then_some(ControllerState::Gone as u8)
            })
            .is_ok()
    }

    /// Stores `state` unless the device is gone, which no reset undoes.
    pub fn store_unless_gone(&self, state: ControllerState) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (ControllerState::from_u8(v) != ControllerState::Gone).then_some(state as u8)
            });
    }
}
