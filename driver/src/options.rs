//! What the caller chooses when opening a controller and creating queue pairs.

use std::time::Duration;

use crate::transport::vfio::VfioOptions;

/// Controller-wide choices, fixed at bring-up.
#[derive(Debug, Clone)]
pub struct Options {
    /// I/O queue pairs to ask for with Set Features Number of Queues.
    pub io_queues: u16,
    /// Admin queue depth (capped by CAP.MQES + 1 and 4096).
    pub admin_depth: u16,
    /// Enable interrupt vectors (MSI-X) before CC.EN so queue pairs may use interrupts.
    pub interrupts: bool,
    /// Use shadow doorbells (Doorbell Buffer Config) when the controller offers them.
    pub shadow_doorbells: bool,
    /// Deadline for admin commands.
    pub admin_timeout: Duration,
    /// Deadline for I/O commands before they are aborted.
    pub io_timeout: Duration,
    /// How long an aborted command may take to complete before the controller is reset.
    pub abort_timeout: Duration,
    /// Upper bound on the shutdown wait (the controller's RTD3E is used when smaller).
    pub shutdown_timeout: Duration,
    /// Largest transfer of one command when the controller reports no MDTS limit.
    pub max_transfer_bytes: u64,
    /// Asynchronous Event Requests kept outstanding (capped by AERL + 1).
    pub async_events: u16,
    /// VFIO transport options.
    pub vfio: VfioOptions,
    /// How many times an I/O command is resubmitted after a failure that allows a
    /// retry (cut short by a controller reset, aborted after its deadline, or a
    /// transient status without DNR) before it fails with
    /// [`crate::Error::RetriesExhausted`]; 0 turns retries off. Linux's
    /// `nvme_max_retries` is 5 too.
    pub command_retries: u8,
    /// How long a queue pair with commands outstanding polls (or waits for its
    /// interrupt) without a completion before it reads CSTS to see whether the device
    /// is gone (all ones: surprise removal). Read on the pair's coarse clock, so the
    /// effective interval is at least one timer tick.
    pub removal_check_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            io_queues: 4,
            admin_depth: 32,
            interrupts: true,
            shadow_doorbells: true,
            admin_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            abort_timeout: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(10),
            max_transfer_bytes: 2 << 20,
            async_events: 4,
            vfio: VfioOptions::default(),
            command_retries: 5,
            removal_check_interval: Duration::from_millis(1),
        }
    }
}

/// How a queue pair learns about completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompletionMode {
    /// The submitting thread polls the completion queue.
    #[default]
    Polled,
    /// The completion queue raises its own interrupt vector; waits block on its eventfd.
    Interrupt,
}

/// How a queue pair describes data buffers to the controller: PRPs (NVMe Base 2.0,
/// 4.1.1) or Scatter Gather Lists (4.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SglMode {
    /// PRPs when they can describe the buffer; an SGL when the buffer breaks the PRP
    /// rules (a segment after the first not starting on a page boundary, one before
    /// the last not ending on one, an address not 4-byte aligned, more pages than the
    /// PRP lists hold) and the controller supports SGLs.
    #[default]
    Auto,
    /// PRPs only: a buffer breaking the PRP rules is refused.
    Never,
    /// An SGL for every data command; creating the queue pair fails when the
    /// controller does not support SGLs (Identify SGLS).
    Always,
}

/// Per-queue-pair choices.
#[derive(Debug, Clone, Copy)]
pub struct QueuePairOptions {
    /// Queue entries (capped by CAP.MQES + 1); the pair holds `depth - 1` commands.
    pub depth: u16,
    /// Polled or interrupt-driven completions.
    pub mode: CompletionMode,
    /// PRPs or SGLs for data transfers.
    pub sgl: SglMode,
}

impl Default for QueuePairOptions {
    fn default() -> Self {
        QueuePairOptions {
            depth: 256,
            mode: CompletionMode::Polled,
            sgl: SglMode::Auto,
        }
    }
}
