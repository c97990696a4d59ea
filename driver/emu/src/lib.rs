//! A software NVMe controller that sees only its registers and the memory the
//! driver mapped for DMA.
