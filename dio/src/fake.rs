//! A fake queue pair for unit tests: executes commands at submit time against a
//! RAM namespace with a volatile write cache model, logs every command, and
//! reports completions when polled.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::buf::DmaBuf;
use crate::queue::{CommandStatus, DeviceCaps, DioQueue, IoCommand, QueueError};

pub const IOVA_BASE: u64 = 0x1000_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    Read { lba: u64, blocks: u32 },
    Write { lba: u64, blocks: u32, fua: bool },
    WriteZeroes { lba: u64, blocks: u32 },
    Flush,
    Compare { lba: u64, blocks: u32 },
}

pub struct DevState {
    pub caps: DeviceCaps,
    pub host: Vec<u8>,
    host_next: usize,
    /// What reads see (cache over media).
    pub data: Vec<u8>,
    /// What survives a power cut.
    pub durable: Vec<u8>,
    pub log: Vec<Logged>,
    /// Fail writes touching this LBA with a media error.
    pub fail_write_lba: Option<u64>,
}

#[derive(Clone)]
pub struct FakeDev(pub Arc<Mutex<DevState>>);

impl FakeDev {
    pub fn new(caps: DeviceCaps) -> Self {
        let bytes = (caps.capacity_lbas * u64::from(caps.lba_size)) as usize;
        FakeDev(Arc::new(Mutex::new(DevState {
            caps,
            host: vec![0; 32 << 20],
            host_next: 0,
            data: vec![0; bytes],
            durable: vec![0; bytes],
            log: Vec::new(),
            fail_write_lba: None,
        })))
    }

    pub fn st(&self) -> std::sync::MutexGuard<'_, DevState> {
        self.0.lock().unwrap()
    }

    /// A buffer of `len` bytes at `offset` past a 4 KiB boundary.
    pub fn buf_at(&self, len: usize, offset: usize) -> FakeBuf {
        let mut st = self.st();
        let start = st.host_next.next_multiple_of(4096) + offset;
        st.host_next = start + len;
        assert!(st.host_next <= st.host.len(), "fake host memory exhausted");
        FakeBuf {
            dev: self.clone(),
            off: start,
            len,
            poisoned: false,
        }
    }

    pub fn buf(&self, len: usize) -> FakeBuf {
        self.buf_at(len, 0)
    }

    pub fn queue(&self) -> FakeQueue {
        FakeQueue {
            dev: self.clone(),
            cq: VecDeque::new(),
            depth: 1024,
            hold: false,
            waits: 0,
            polls: 0,
        }
    }

    pub fn log(&self) -> Vec<Logged> {
        self.st().log.clone()
    }

    pub fn clear_log(&self) {
        self.st().log.clear();
    }

    pub fn power_cut(&self) {
        let mut st = self.st();
        st.data = st.durable.clone();
    }

    pub fn media(&self, addr: u64, len: usize) -> Vec<u8> {
        self.st().data[addr as usize..addr as usize + len].to_vec()
    }

    pub fn set_media(&self, addr: u64, bytes: &[u8]) {
        let mut st = self.st();
        st.data[addr as usize..addr as usize + bytes.len()].copy_from_slice(bytes);
        st.durable[addr as usize..addr as usize + bytes.len()].copy_from_slice(bytes);
    }
}

pub struct FakeBuf {
    dev: FakeDev,
    off: usize,
    len: usize,
    pub poisoned: bool,
}

impl FakeBuf {
    pub fn fill(&self, byte: u8) {
        let mut st = self.dev.st();
        st.host[self.off..self.off + self.len].fill(byte);
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.dev.st().host[self.off..self.off + self.len].to_vec()
    }
}

impl DmaBuf for FakeBuf {
    fn len(&self) -> usize {
        self.len
    }
    fn iova_at(&self, offset: usize) -> Option<u64> {
        (!self.poisoned && offset < self.len).then_some(IOVA_BASE + (self.off + offset) as u64)
    }
    fn zero(&self, offset: usize, len: usize) -> bool {
        if offset + len > self.len {
            return false;
        }
        let mut st = self.dev.st();
        st.host[self.off + offset..self.off + offset + len].fill(0);
        true
    }
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> bool {
        if offset + dst.len() > self.len {
            return false;
        }
        let st = self.dev.st();
        dst.copy_from_slice(&st.host[self.off + offset..self.off + offset + dst.len()]);
        true
    }
    fn write_at(&self, offset: usize, src: &[u8]) -> bool {
        if offset + src.len() > self.len {
            return false;
        }
        let mut st = self.dev.st();
        st.host[self.off + offset..self.off + offset + src.len()].copy_from_slice(src);
        true
    }
}

pub struct FakeQueue {
    pub dev: FakeDev,
    cq: VecDeque<(u64, CommandStatus)>,
    pub depth: usize,
    /// Keep completions until `release` is called.
    pub hold: bool,
    pub waits: usize,
    pub polls: usize,
}

const MEDIA_ERROR: CommandStatus = CommandStatus {
    status: 0x281,
    dnr: true,
};

impl DioQueue for FakeQueue {
    fn caps(&self) -> DeviceCaps {
        self.dev.st().caps
    }

    fn submit(&mut self, cmd: &IoCommand<'_>, tag: u64) -> Result<(), QueueError> {
        if self.cq.len() >= self.depth {
            return Err(QueueError::Full);
        }
        let mut st = self.dev.st();
        let lbs = st.caps.lba_size as usize;
        let vwc = st.caps.volatile_write_cache;
        let mut status = CommandStatus::SUCCESS;
        match *cmd {
            IoCommand::Read {
                lba,
                blocks,
                segments,
            } => {
                st.log.push(crate::fake::Logged::Read { lba, blocks });
                let mut at = lba as usize * lbs;
                for s in segments {
                    let h = (s.iova - IOVA_BASE) as usize;
                    let l = s.len as usize;
                    let (data, host) = (st.data[at..at + l].to_vec(), &mut st.host);
                    host[h..h + l].copy_from_slice(&data);
                    at += l;
                }
                assert_eq!(at, (lba as usize + blocks as usize) * lbs);
            }
            IoCommand::Write {
                lba,
                blocks,
                segments,
                fua,
            } => {
                st.log.push(Logged::Write { lba, blocks, fua });
                if st
                    .fail_write_lba
                    .is_some_and(|f| (lba..lba + u64::from(blocks)).contains(&f))
                {
                    status = MEDIA_ERROR;
                } else {
                    let mut at = lba as usize * lbs;
                    for s in segments {
                        let h = (s.iova - IOVA_BASE) as usize;
                        let l = s.len as usize;
                        let src = st.host[h..h + l].to_vec();
                        st.data[at..at + l].copy_from_slice(&src);
                        if fua || !vwc {
                            st.durable[at..at + l].copy_from_slice(&src);
                        }
                        at += l;
                    }
                    assert_eq!(at, (lba as usize + blocks as usize) * lbs);
                }
            }
            IoCommand::WriteZeroes { lba, blocks, fua } => {
                st.log.push(Logged::WriteZeroes { lba, blocks });
                let r = lba as usize * lbs..(lba as usize + blocks as usize) * lbs;
                st.data[r.clone()].fill(0);
                if fua || !vwc {
                    st.durable[r].fill(0);
                }
            }
            IoCommand::Flush => {
                st.log.push(Logged::Flush);
                st.durable = st.data.clone();
            }
            IoCommand::Compare {
                lba,
                blocks,
                segments,
            } => {
                st.log.push(Logged::Compare { lba, blocks });
                let mut at = lba as usize * lbs;
                for s in segments {
                    let h = (s.iova - IOVA_BASE) as usize;
                    let l = s.len as usize;
                    if st.data[at..at + l] != st.host[h..h + l] {
                        status = CommandStatus {
                            status: 0x285,
                            dnr: true,
                        };
                    }
                    at += l;
                }
            }
        }
        self.cq.push_back((tag, status));
        Ok(())
    }

    fn poll<F: FnMut(u64, CommandStatus)>(
        &mut self,
        max: usize,
        mut done: F,
    ) -> Result<usize, QueueError> {
        self.polls += 1;
        if self.hold {
            return Ok(0);
        }
        let mut n = 0;
        while n < max {
            let Some((tag, st)) = self.cq.pop_front() else {
                break;
            };
            done(tag, st);
            n += 1;
        }
        Ok(n)
    }

    fn wait_interrupt(&mut self, _timeout: Duration) -> Result<(), QueueError> {
        self.waits += 1;
        Ok(())
    }

    /// The fake moves data at submission: nothing touches a buffer later.
    fn verdict_limit(&self) -> Duration {
        Duration::ZERO
    }
}

pub fn caps(lba: u32, vwc: bool, write_zeroes: bool) -> DeviceCaps {
    DeviceCaps {
        lba_size: lba,
        capacity_lbas: (16 << 20) / u64::from(lba),
        volatile_write_cache: vwc,
        fua: true,
        max_transfer: 128 << 10,
        write_zeroes,
        page_size: 4096,
        max_segments: 16,
    }
}
