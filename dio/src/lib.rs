//! Direct I/O with the semantics of Linux iomap direct I/O over NVMe queue pairs.
